"""The cleaning API: list images by loss, relabel / delete / keep / undo, thumbnails, the page.

The page names images only by the ids the server issued; no request carries a
path. Every change carries the per-run token (header ``X-Ursa-Token``, which
only the page this server served knows) and the version of the image it was
decided on, so a change made from a stale tab is refused with 409.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict

from ursa.clean.guard import TOKEN_HEADER, token_problem
from ursa.clean.journal import Entry, Summary, UnknownImageError
from ursa.clean.session import CleanSession, ImageView

TOKEN_PLACEHOLDER = "__URSA_TOKEN__"
#: Ids are SQLite integer keys; anything longer is not one of ours.
_MAX_ID_DIGITS = 18

router = APIRouter()


def get_session(request: Request) -> CleanSession:
    session: CleanSession = request.app.state.session
    return session


def require_token(
    request: Request,
    x_ursa_token: Annotated[str | None, Header(alias=TOKEN_HEADER)] = None,
) -> None:
    """403 unless the request carries this run's token (another site's page cannot know it).

    :class:`~ursa.clean.guard.RequestGuard` has checked it already, before the body was
    read; this says so in the API's schema and holds if the app runs without the guard.
    """
    problem = token_problem(x_ursa_token, request.app.state.token)
    if problem is not None:
        raise HTTPException(status_code=403, detail=problem)


SessionDep = Annotated[CleanSession, Depends(get_session)]
Token = Depends(require_token)


def image_id(raw: str, what: str = "an image id") -> int:
    """An id the server issued, or 404: the client never names a file any other way."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > _MAX_ID_DIGITS:
        raise UnknownImageError(
            f"{raw[:40]!r} is not {what}: ids are the numbers the server's listing gives"
        )
    return int(raw)


class ImageOut(BaseModel):
    id: int
    version: int
    """Send it back with a decision; a stale one gets 409."""
    name: str
    """The file's name (for people; the API takes ids)."""
    label: str
    split: str
    state: str
    reviewed: bool
    predicted: str | None
    probability: float | None
    label_probability: float | None
    loss: float | None
    problem: str
    decision: str
    """The latest decision in effect: relabel, delete, keep, or empty."""
    thumbnail: str


class PageOut(BaseModel):
    total: int
    offset: int
    limit: int
    images: list[ImageOut]


class SummaryOut(BaseModel):
    relabeled: int
    deleted: int
    kept: int
    undone: int


class EntryOut(BaseModel):
    id: int
    image_id: int
    action: str
    state: str
    old_label: str
    new_label: str
    at: str
    undoes: int | None
    undone_by: int | None
    description: str


class DecisionOut(BaseModel):
    entry: EntryOut
    image: ImageOut
    summary: SummaryOut


class SessionOut(BaseModel):
    data: str
    bundle: str
    class_names: list[str]
    counts: dict[str, int]
    page_size: int
    summary: SummaryOut


class Decision(BaseModel):
    """A decision names the image version it was taken on; nothing else (no paths)."""

    model_config = ConfigDict(extra="forbid")
    version: int


class Relabel(Decision):
    label: str


def _image_out(view: ImageView) -> ImageOut:
    image = view.image
    return ImageOut(
        id=image.id, version=image.version, name=image.name, label=image.label,
        split=view.split, state=image.state, reviewed=image.reviewed, predicted=view.predicted,
        probability=view.probability, label_probability=view.label_probability, loss=view.loss,
        problem=view.problem, decision=view.decision,
        thumbnail=f"/api/images/{image.id}/thumbnail?v={image.sha256[:16]}",
    )  # fmt: skip


def _summary_out(summary: Summary) -> SummaryOut:
    return SummaryOut(
        relabeled=summary.relabeled, deleted=summary.deleted, kept=summary.kept,
        undone=summary.undone,
    )  # fmt: skip


def _entry_out(entry: Entry) -> EntryOut:
    return EntryOut(
        id=entry.id, image_id=entry.image_id, action=entry.action, state=entry.state,
        old_label=entry.old_label, new_label=entry.new_label, at=entry.at, undoes=entry.undoes,
        undone_by=entry.undone_by, description=entry.describe(),
    )  # fmt: skip


def _decided(session: CleanSession, entry: Entry) -> DecisionOut:
    image = session.journal.image(entry.image_id)
    return DecisionOut(
        entry=_entry_out(entry),
        image=_image_out(session.view(image)),
        summary=_summary_out(session.journal.summary()),
    )


_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "a decision that makes no sense (e.g. a class that does not exist)"},
    403: {"description": "missing or wrong X-Ursa-Token"},
    413: {"description": "a body longer than URSA_CLEAN_MAX_BODY_BYTES"},
    404: {"description": "no image (or decision) has this id"},
    409: {"description": "the image changed since the page showed it; reload"},
}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page(request: Request) -> HTMLResponse:
    html = resources.files("ursa.clean").joinpath("static", "clean.html").read_text("utf-8")
    return HTMLResponse(
        html.replace(TOKEN_PLACEHOLDER, request.app.state.token),
        headers={"Cache-Control": "no-store"},
    )


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/session", response_model=SessionOut, summary="Classes, counts, summary")
def session_info(session: SessionDep, request: Request) -> SessionOut:
    return SessionOut(
        data=session.journal.root.name,
        bundle=session.bundle_name,
        class_names=session.class_names,
        counts=session.counts(),
        page_size=request.app.state.settings.page_size,
        summary=_summary_out(session.journal.summary()),
    )


@router.get("/api/images", response_model=PageOut, responses=_ERRORS, summary="One page")
def images(
    session: SessionDep,
    label: Annotated[str, Query(max_length=200)] = "all",
    split: Literal["all", "train", "valid"] = "all",
    state: Literal["active", "deleted"] = "active",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 48,
) -> PageOut:
    """Images of ``label`` (or ``all``) in ``split``, highest loss first."""
    total, views = session.listing(
        label=label, split=split, state=state, offset=offset, limit=limit
    )
    return PageOut(total=total, offset=offset, limit=limit, images=[_image_out(v) for v in views])


@router.get("/api/images/{raw_id}", response_model=ImageOut, responses=_ERRORS)
def one_image(raw_id: str, session: SessionDep) -> ImageOut:
    return _image_out(session.view(session.journal.image(image_id(raw_id))))


@router.get("/api/images/{raw_id}/thumbnail", responses=_ERRORS, summary="JPEG thumbnail")
def thumbnail(raw_id: str, session: SessionDep) -> Response:
    data = session.thumbnail(image_id(raw_id))
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
    )


@router.post(
    "/api/images/{raw_id}/relabel", response_model=DecisionOut, responses=_ERRORS,
    dependencies=[Token], summary="Move the image to another class folder",
)  # fmt: skip
def relabel(raw_id: str, body: Relabel, session: SessionDep) -> DecisionOut:
    entry = session.journal.relabel(image_id(raw_id), body.label, version=body.version)
    return _decided(session, entry)


@router.post(
    "/api/images/{raw_id}/delete", response_model=DecisionOut, responses=_ERRORS,
    dependencies=[Token], summary="Move the image to the quarantine folder",
)  # fmt: skip
def delete(raw_id: str, body: Decision, session: SessionDep) -> DecisionOut:
    return _decided(session, session.journal.delete(image_id(raw_id), version=body.version))


@router.post(
    "/api/images/{raw_id}/keep", response_model=DecisionOut, responses=_ERRORS,
    dependencies=[Token], summary="Mark the image reviewed; the file stays",
)  # fmt: skip
def keep(raw_id: str, body: Decision, session: SessionDep) -> DecisionOut:
    return _decided(session, session.journal.keep(image_id(raw_id), version=body.version))


@router.get("/api/journal", response_model=list[EntryOut], summary="Every decision, newest first")
def journal(session: SessionDep) -> list[EntryOut]:
    return [_entry_out(entry) for entry in reversed(session.journal.history())]


@router.post(
    "/api/journal/{raw_id}/undo", response_model=DecisionOut, responses=_ERRORS,
    dependencies=[Token], summary="Revert one decision",
)  # fmt: skip
def undo(raw_id: str, session: SessionDep) -> DecisionOut:
    return _decided(session, session.journal.undo(image_id(raw_id, "a decision number")))
