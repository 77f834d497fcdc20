"""Patient name and ID for the status page, only with ``http.show_patient_data: true`` (off by default).

The database holds no patient data, so they are read from the received files' headers (two attributes, no
pixel data), at most once per file. The page escapes them like every other value.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

import pydicom

from dicomnode.web.queries import JobView

CACHE_SIZE = 1000


class PatientLookup:
    def __init__(self) -> None:
        self._cache: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def _read(self, path: str) -> tuple[str, str]:
        with self._lock:
            if path in self._cache:
                return self._cache[path]
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientName", "PatientID"])
            found = (str(ds.get("PatientName", "") or ""), str(ds.get("PatientID", "") or ""))
        except Exception:  # noqa: BLE001 - a missing (retention) or unreadable file: nothing to show
            found = ("", "")
        with self._lock:
            self._cache[path] = found
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return found

    def of(self, jobs: Iterable[JobView]) -> dict[int, tuple[str, str]]:
        """Instance id -> (patient name, patient ID) for every instance of ``jobs``."""
        return {i.id: self._read(i.path) for job in jobs for i in job.instances}
