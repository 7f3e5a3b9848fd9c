"""Which repository a command means: `owner/name` or the numeric id, found in the store.

The release state (`repos/<id>/state.json`) carries `repo`, the name when last seen, so a
name is resolved by reading the states (one listing and one read per repository: fine
for a command). Names compare case-insensitively, as GitHub's do.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, TypeVar

import msgspec
from pydantic import BaseModel, ValidationError

from governor.commands import EXIT_ERROR, EXIT_USAGE, CommandError
from governor.flows.context import Repo
from governor.ledger import DecisionRecord, decision_key, state_key
from governor.state import ReleaseState
from governor.store import ObjectStore

if TYPE_CHECKING:
    from governor.wiring import Governor

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")
_ID: Final = re.compile(r"[0-9]{1,19}")
_FULL_SHA: Final = re.compile(r"[0-9a-f]{40}")
_SHA_PREFIX: Final = re.compile(r"[0-9a-f]{4,40}")
_STATE_KEY: Final = re.compile(r"repos/([0-9]+)/state\.json")
_Model = TypeVar("_Model", bound=BaseModel)


class RepoRef(msgspec.Struct, frozen=True):
    """How a repository was asked for: by id, or by `owner/name`."""

    id: int | None
    name: str | None

    def __str__(self) -> str:
        return str(self.id) if self.id is not None else str(self.name)


def parse_repo(text: str) -> RepoRef:
    """`owner/name` or a numeric id; anything else is a usage error."""
    text = text.strip()
    if _ID.fullmatch(text):
        return RepoRef(int(text), None)
    if _NAME.fullmatch(text):
        return RepoRef(None, text)
    raise CommandError(
        f"'{text}' is not a repository: give owner/name or its numeric id", EXIT_USAGE
    )


def read_state(store: ObjectStore, repo_id: int) -> ReleaseState | None:
    return _load(store, state_key(repo_id), ReleaseState)


def _load(store: ObjectStore, key: str, model: type[_Model]) -> _Model | None:
    """The record at `key` (None if absent); one that cannot be read is an error naming it."""
    try:
        current = store.get(key)
        return None if current is None else model.model_validate_json(current.data)
    except ValueError as exc:  # the store's header, or the record's JSON or fields
        raise unreadable(store, key, exc) from None


def unreadable(store: ObjectStore, key: str, exc: ValueError) -> CommandError:
    """A stored record that is not what the governor writes: exit 1, saying what to do."""
    return CommandError(
        f"the stored record '{key}' in {store.url} cannot be read ({problem(exc)}). It was "
        f"changed by hand or cut short: look at it with 'governor store cat {key}' and "
        "put back a good copy (a backup, or an earlier version of the object). The "
        "governor does not change a record it cannot read",
        EXIT_ERROR,
    )


def problem(exc: ValueError) -> str:
    """What is wrong with a record, in one line: a field's first problem, or the message."""
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the record"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"not a valid {exc.title}: {where}: {first['msg']}{more}"
    return str(exc)


def all_states(store: ObjectStore) -> list[ReleaseState]:
    """Every repository's release state, by id."""
    states = []
    for key in store.list("repos/"):
        found = _STATE_KEY.fullmatch(key)
        if found is None:
            continue
        state = read_state(store, int(found.group(1)))
        if state is not None:
            states.append(state)
    return sorted(states, key=lambda s: s.repo_id)


def find_state(store: ObjectStore, ref: RepoRef) -> ReleaseState | None:
    """The release state of the repository `ref` names, None if the store has none."""
    if ref.id is not None:
        return read_state(store, ref.id)
    wanted = str(ref.name).lower()
    matches = [s for s in all_states(store) if s.repo.lower() == wanted]
    return max(matches, key=lambda s: s.version) if matches else None


def resolve_state(store: ObjectStore, text: str) -> ReleaseState:
    """The release state for REPO, or an error saying clearly that it is unknown."""
    ref = parse_repo(text)
    state = find_state(store, ref)
    if state is None:
        raise CommandError(
            f"unknown repository '{ref}': no release state in {store.url} (the governor "
            "has not evaluated anything there yet, or the name is wrong; "
            "'governor status' lists the known ones)",
            EXIT_ERROR,
        )
    return state


def resolve_sha(store: ObjectStore, state: ReleaseState, text: str) -> str:
    """A full SHA from a full one or a unique prefix (at least 4 hex digits) among the SHAs
    the store knows for this repository: its decision records and release state."""
    sha = text.strip().lower()
    if _FULL_SHA.fullmatch(sha):
        return sha
    if not _SHA_PREFIX.fullmatch(sha):
        raise CommandError(f"'{text}' is not a commit SHA (4 to 40 hex digits)", EXIT_USAGE)
    known = {
        key.rsplit("/", 1)[-1].removesuffix(".json")
        for key in store.list(f"decisions/{state.repo_id}/")
    }
    known |= set(state.holds) | {d.sha for d in state.dispatches}
    known |= {s for s in (state.production_sha, state.production_previous_sha) if s}
    matches = sorted(s for s in known if s.startswith(sha))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CommandError(f"no SHA starting with {sha} is known for {state.repo}", EXIT_ERROR)
    raise CommandError(
        f"{sha} is ambiguous in {state.repo}: {', '.join(m[:12] for m in matches)}", EXIT_USAGE
    )


def read_decision(store: ObjectStore, repo_id: int, sha: str) -> DecisionRecord | None:
    return _load(store, decision_key(repo_id, sha), DecisionRecord)


def locate(governor: Governor, text: str) -> tuple[Repo, str | None]:
    """The repository through the App (its installation and default branch), and the
    production SHA from the store (None before the first deploy, or if the store has no
    state for it yet)."""
    ref = parse_repo(text)
    state = find_state(governor.store, ref)
    repo_id = state.repo_id if state is not None else ref.id
    name = state.repo if state is not None else ref.name
    wanted = name.lower() if name else None
    app = governor.app
    for installation_id in app.installation_ids():
        for installed in app.installed_repos(installation_id):
            if installed.id == repo_id or installed.full_name.lower() == wanted:
                repo = Repo(
                    id=installed.id,
                    full_name=installed.full_name,
                    default_branch=installed.default_branch,
                    installation_id=installation_id,
                    api=app.repo(installation_id, installed.full_name),
                )
                return repo, state.production_sha if state is not None else None
    raise CommandError(f"unknown repository '{ref}': the App is not installed on it", EXIT_ERROR)
