"""Runs a Dockerfile's steps without Docker: parse it, then COPY, ENV, WORKDIR and RUN in a sandbox
directory that stands for the image's root, with a fresh venv standing for the base image's Python."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Absolute container paths (/app, /data, /vol1) move under the sandbox; URLs and `sed '/^...'` do not.
CONTAINER_PATH = re.compile(r"(?<![\w:./'])/(?=[A-Za-z])")
# Commands that change the host system: recorded by shims instead of run.
SYSTEM_COMMANDS = ("useradd", "groupadd", "chown")


@dataclass
class Instruction:
    keyword: str
    argument: str

    def exec_form(self) -> list[str]:
        """``["a", "b"]`` (exec form) or a shell-form string split like a shell would."""
        text = self.argument.strip()
        return json.loads(text) if text.startswith("[") else ["/bin/sh", "-c", text]


def parse(path: Path) -> list[Instruction]:
    logical = re.sub(r"\\\n", " ", path.read_text())
    instructions = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, argument = line.partition(" ")
            instructions.append(Instruction(keyword.upper(), argument.strip()))
    return instructions


def ignored(relative: str, patterns: list[str]) -> bool:
    """``.dockerignore`` matching, enough for plain names and ``**/`` globs."""
    parts = relative.split("/")
    for pattern in patterns:
        pattern = pattern.strip("/")
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) for i in range(len(parts))):
            return True
    return False


@dataclass
class Sandbox:
    """The image being built: a root directory, a venv for the base image's Python, env, cwd, user."""

    root: Path
    context: Path
    env: dict = field(default_factory=dict)
    workdir: str = "/"
    user: str = "root"
    shim_log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.venv = self.root / "usr-local"
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        shims = self.root / "shims"
        shims.mkdir()
        self.shim_log = self.root / "shims.log"
        for name in SYSTEM_COMMANDS:
            shim = shims / name
            shim.write_text(f'#!/bin/sh\necho "{name} $*" >> {self.shim_log}\n')
            shim.chmod(0o755)
        self.base_path = f"{self.venv}/bin:{shims}:/usr/bin:/bin"

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def remap(self, text: str) -> str:
        return CONTAINER_PATH.sub(f"{self.root}/", text)

    def process_env(self, **overrides: str) -> dict:
        env = {k: self.remap(v) for k, v in self.env.items()}
        return {"HOME": str(self.root), "LANG": "C.UTF-8", **env, "PATH": self.base_path, **overrides}

    def apply(self, instruction: Instruction) -> None:
        keyword, argument = instruction.keyword, instruction.argument
        if keyword == "ENV":
            for pair in shlex.split(argument):
                name, _, value = pair.partition("=")
                self.env[name] = value
        elif keyword == "WORKDIR":
            self.workdir = argument
            self.path(argument).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, target = shlex.split(argument)
            self.copy(sources, target)
        elif keyword == "RUN":
            subprocess.run(
                ["/bin/sh", "-c", self.remap(argument)], cwd=self.path(self.workdir), env=self.process_env(),
                check=True, timeout=600,
            )
        elif keyword == "USER":
            self.user = argument

    def copy(self, sources: list[str], target: str) -> None:
        destination = self.path(target if target.startswith("/") else f"{self.workdir}/{target}")
        patterns = [p for p in (self.context / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
        for source in sources:
            if source != ".":
                shutil.copy2(self.context / source, destination / source if target.endswith((".", "/")) else destination)
                continue
            for directory, dirnames, filenames in os.walk(self.context):
                relative_dir = os.path.relpath(directory, self.context)
                dirnames[:] = [d for d in dirnames if not ignored(os.path.normpath(f"{relative_dir}/{d}"), patterns)]
                for name in filenames:
                    relative = os.path.normpath(f"{relative_dir}/{name}")
                    if not ignored(relative, patterns):
                        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(self.context / relative, destination / relative)
