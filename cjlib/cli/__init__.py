"""The ``cj`` command-line tool: parse → call cjlib → render. No logic lives only here.

One module per command group, each with its own ``typer.Typer()``, joined in :mod:`.main`:
``db`` (:mod:`.db`), ``anchors`` (:mod:`.anchors`), ``batch`` (:mod:`.batch`), ``health``
(:mod:`.health`), ``pipeline`` (:mod:`.pipeline`) and ``init`` (:mod:`.workspace`). Shared
options, consoles and helpers are in :mod:`._common`. No cjlib domain module imports this
package.
"""
