"""Jinja2 templates for everything fax-bridge renders: cover pages, reports, fax mails.

Templates ship in ``bridge/templates/``; an operator's ``templates_dir`` is
searched first, so a file of the same name there replaces ours. Because those
templates come from outside the code base they run in jinja2's immutable
sandbox (no access to Python internals, no mutation of the values we pass).
Undefined names are errors (``StrictUndefined``): a typo in a template fails
loudly instead of printing nothing. Templates named ``*.html``, ``*.htm`` or
``*.xml`` (optionally followed by ``.j2``, ``.jinja`` or ``.jinja2``) escape
every value automatically; text templates do not.

Only reading templates touches the file system, through jinja2's loaders.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader, StrictUndefined
from jinja2.loaders import BaseLoader
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.errors import ConfigError

_TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2")
_ESCAPED_EXTENSIONS = (".html", ".htm", ".xml")


def _autoescape(name: str | None) -> bool:
    if name is None:  # a template built from a string: escape, to be safe
        return True
    lowered = name.lower()
    for suffix in _TEMPLATE_SUFFIXES:
        lowered = lowered.removesuffix(suffix)
    return lowered.endswith(_ESCAPED_EXTENSIONS)


class TemplateRenderer:
    """Renders named templates; the operator's ``templates_dir`` overrides ours."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        loaders: list[BaseLoader] = []
        if templates_dir is not None:
            loaders.append(FileSystemLoader(templates_dir))
        loaders.append(PackageLoader("bridge", "templates"))
        self._env = ImmutableSandboxedEnvironment(
            loader=ChoiceLoader(loaders),
            autoescape=_autoescape,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,  # a reload builds a new renderer
        )

    def check(self, *names: str) -> None:
        """Load and compile ``names`` now (at start-up or reload), raising :class:`ConfigError`."""
        for name in names:
            try:
                self._env.get_template(name)
            except Exception as exc:  # any template error: TemplateNotFound, syntax ...
                raise ConfigError(f"template {name!r}: {exc}") from exc

    def render(self, name: str, /, **context: object) -> str:
        """Render template ``name`` with ``context``.

        Any failure inside a template (missing file, syntax error, undefined
        name, sandbox violation, an exception in an expression) is a problem of
        the installation, not of the message: it raises :class:`ConfigError`
        naming the template.
        """
        try:
            return self._env.get_template(name).render(**context)
        except Exception as exc:  # template code is operator-supplied: anything can fail
            raise ConfigError(f"template {name!r}: {type(exc).__name__}: {exc}") from exc
