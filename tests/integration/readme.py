"""The README's "Adding mlapp to your project" and "Deploying your project", read as what a
host project applies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Adding mlapp to your project"
DEPLOY = "## Deploying your project"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
#: A Python block that starts with ``# settings.py``, ``# urls.py`` or ``# wsgi.py`` is added at
#: the end of that file of the project ``django-admin startproject`` wrote.
_TARGET = re.compile(r"^# (settings|urls|wsgi)\.py\b")


@dataclass(frozen=True)
class Integration:
    #: file name (``settings.py``) -> the blocks to add at its end, in the README's order
    files: dict[str, list[str]]
    #: the ``python manage.py ...`` lines of the shell block that runs them, in order
    commands: list[list[str]]
    #: the ``pip install`` lines
    installs: list[str]


def section(text: str | None = None, title: str = SECTION) -> str:
    text = README.read_text() if text is None else text
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end != -1 else len(text)]


def integration(text: str | None = None, title: str = SECTION) -> Integration:
    files: dict[str, list[str]] = {}
    commands: list[list[str]] = []
    installs: list[str] = []
    for language, body in _FENCE.findall(section(text, title)):
        target = _TARGET.match(body)
        if language == "python" and target:
            files.setdefault(f"{target.group(1)}.py", []).append(body)
        elif language == "sh":
            for line in body.splitlines():
                line = line.split("#", 1)[0].strip() if " #" in line else line.strip()
                if line.startswith("python manage.py "):
                    commands.append(line.split()[2:])
                elif line.startswith("pip install "):
                    installs.append(line)
    return Integration(files=files, commands=commands, installs=installs)
