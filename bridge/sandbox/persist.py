"""Keep the sandbox's state in a JSON file across restarts (``--state FILE``).

The model is written after every mutation, atomically: to a temporary file in the
same directory, then ``os.replace``. Bytes (fax documents, inbound images, uploads)
live beside it in ``FILE.blobs/``, one file per SHA-256, written once; blobs no
longer referenced are removed after each save. A crash therefore leaves either the
old or the new state, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from bridge.sandbox.model import (
    FaxDocument,
    FaxOptions,
    ForwardEmail,
    InboundFax,
    OutboundFax,
    UploadDocument,
)
from bridge.sandbox.state import SandboxState

FORMAT_VERSION = 1


class StateFileError(Exception):
    """The state file exists but cannot be read back."""


def _atomic_write(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class StateFile:
    """Saves and loads one :class:`SandboxState` at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.blobs = path.with_name(path.name + ".blobs")
        self._referenced: set[str] = set()

    def _put(self, data: bytes | bytearray, digest: str | None = None) -> str:
        name = digest or hashlib.sha256(data).hexdigest()
        target = self.blobs / name
        if not target.exists():
            _atomic_write(target, bytes(data))
        self._referenced.add(name)
        return name

    def _get(self, name: str) -> bytes:
        try:
            return (self.blobs / name).read_bytes()
        except OSError as exc:
            raise StateFileError(f"{self.path}: missing blob {name}: {exc}") from exc

    def save(self, state: SandboxState) -> None:
        """Write the whole state (see the module docstring for the guarantees)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.blobs.mkdir(exist_ok=True)
        self._referenced = set()
        document = {
            "version": FORMAT_VERSION,
            "next_fax_id": state.next_fax_id,
            "next_message_id": state.next_message_id,
            "credit": str(state.credit),
            "faxes": [self._fax(fax) for fax in state.faxes.values()],
            "inbound": [self._inbound(fax) for fax in state.inbound.values()],
            "documents": [self._upload(doc) for doc in state.documents.values()],
        }
        _atomic_write(self.path, json.dumps(document, indent=1).encode())
        for blob in self.blobs.iterdir():
            if blob.name not in self._referenced and not blob.name.startswith("."):
                blob.unlink(missing_ok=True)

    def _fax(self, fax: OutboundFax) -> dict[str, Any]:
        record = asdict(fax)
        record["documents"] = [
            {
                "kind": doc.kind,
                "content_type": doc.content_type,
                "blob": None if doc.kind == "external" else self._put(doc.data, doc.sha256),
                "location": doc.location,
                "filename": doc.filename,
                "pages": doc.pages,
            }
            for doc in fax.documents
        ]
        return record

    def _inbound(self, fax: InboundFax) -> dict[str, Any]:
        record = asdict(fax)
        record["image"] = self._put(fax.image)
        return record

    def _upload(self, doc: UploadDocument) -> dict[str, Any]:
        # Not asdict(): it would deep-copy the (up to 20 MB) upload buffer.
        return {
            "id": doc.id,
            "file_name": doc.file_name,
            "file_size": doc.file_size,
            "disposition": doc.disposition,
            "sharing": doc.sharing,
            "creation_time": doc.creation_time,
            "last_usage_time": doc.last_usage_time,
            "data": self._put(doc.data),
            "used": doc.used,
        }

    def load(self, state: SandboxState) -> bool:
        """Fill ``state`` from the file; False when there is no file yet."""
        if not self.path.exists():
            return False
        try:
            document = json.loads(self.path.read_text())
            if document.get("version") != FORMAT_VERSION:
                raise StateFileError(f"{self.path}: unknown format {document.get('version')!r}")
            state.next_fax_id = int(document["next_fax_id"])
            state.next_message_id = int(document["next_message_id"])
            state.credit = Decimal(document["credit"])
            for record in document["faxes"]:
                fax = self._load_fax(record)
                state.faxes[fax.id] = fax
            for record in document["inbound"]:
                emails = [ForwardEmail(**email) for email in record.pop("emails")]
                record["image"] = self._get(record["image"])
                inbound = InboundFax(**record, emails=emails)
                state.inbound[inbound.message_id] = inbound
            for record in document["documents"]:
                record["data"] = bytearray(self._get(record["data"]))
                upload = UploadDocument(**record)
                state.documents[upload.id] = upload
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise StateFileError(f"{self.path}: unreadable sandbox state: {exc!r}") from exc
        return True

    def _load_fax(self, record: dict[str, Any]) -> OutboundFax:
        documents = [
            FaxDocument(
                kind=doc["kind"],
                content_type=doc["content_type"],
                data=b"" if doc["blob"] is None else self._get(doc["blob"]),
                location=doc["location"],
                filename=doc["filename"],
                pages=doc["pages"],
            )
            for doc in record.pop("documents")
        ]
        options = FaxOptions(**record.pop("options"))
        return OutboundFax(**record, options=options, documents=documents)
