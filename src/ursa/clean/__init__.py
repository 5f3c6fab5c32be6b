"""The clean stage: relabel / delete / keep with an undo journal, and the page to do it on.

* :mod:`ursa.clean.journal` — :class:`Journal`: every decision a crash-safe,
  undoable transaction in the dataset's ``ursa.sqlite`` (torch- and FastAPI-free);
* :mod:`ursa.clean.session` — :class:`CleanSession`: a bundle's predictions and
  losses for every image of a folder, cached by content hash;
* :mod:`ursa.clean.app` — the FastAPI app behind ``ursa clean m.ursa DATA``,
  its routes (:mod:`ursa.clean.routes`) and its page (``static/``);
* :mod:`ursa.clean.guard` — the Host, token and body-size checks every request passes
  on its headers, before its body is read.

Importing this package imports neither torch nor FastAPI.
"""

from ursa.clean.journal import CleanImage, ConflictError, Entry, Journal, Summary, UnknownImageError

__all__ = ["CleanImage", "ConflictError", "Entry", "Journal", "Summary", "UnknownImageError"]
