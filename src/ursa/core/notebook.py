"""Running inside a Jupyter kernel: how to tell, and one warning to keep out of it.

In core because both training (its progress bar) and the models stage (timm's import,
which any PyTorch run of a bundle makes) need it.
"""

from __future__ import annotations

import sys
import warnings

__all__ = ["in_notebook", "quiet_tqdm_widget_warning"]


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (Jupyter, VS Code, Colab, ...): an IPython shell
    with a kernel behind it, whose front end shows HTML and updates displays in place.
    A terminal IPython or a script is not one."""
    if "ipykernel" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def quiet_tqdm_widget_warning() -> None:
    """Stop tqdm's "IProgress not found" warning, which ursa would otherwise set off in a
    notebook without ipywidgets.

    timm imports huggingface_hub, which imports ``tqdm.auto``; in a Jupyter kernel that
    module looks for ipywidgets and, missing them, warns (a red ``TqdmWarning`` under the
    cell that creates a Learner) before falling back to the text bar. ursa's own
    progress does not use tqdm (:class:`NotebookLogger` updates IPython displays), so
    the warning asks for a package nothing here needs. This imports ``tqdm.auto`` once,
    with that one warning ignored; every later import finds the module already loaded
    and behaves as it would have (the same fallback). Elsewhere it does nothing.
    """
    if "tqdm.autonotebook" in sys.modules or not in_notebook():
        return
    try:
        from tqdm import TqdmWarning
    except ImportError:  # no tqdm: nothing will warn
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
        import tqdm.auto  # noqa: F401  (imported for its side effect: loaded without the warning)
