"""An incremental parser for Server-Sent Events: bytes in as they arrive, whole events out."""
from dataclasses import dataclass
from typing import List


@dataclass
class SseEvent:
    event: str
    data: str


class SseParser:
    """Feed it chunks in any split (even mid-line or mid-UTF-8 character); it yields complete events."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: List[str] = []

    def feed(self, chunk: bytes) -> List[SseEvent]:
        self._buffer += chunk
        events: List[SseEvent] = []
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                break
            raw, self._buffer = self._buffer[:cut], self._buffer[cut + 1 :]
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if self._data:
                    events.append(SseEvent(self._event or "message", "\n".join(self._data)))
                self._event, self._data = "", []
            elif line.startswith(":"):
                continue  # a comment: the server's keep-alive
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    self._event = value
                elif name == "data":
                    self._data.append(value)
        return events
