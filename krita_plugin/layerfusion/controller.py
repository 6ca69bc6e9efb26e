"""The docker's logic: turns panel clicks into jobs and finished jobs into layers, without Krita.

The document side (``layers.KritaDocuments`` in Krita) is passed in, so the whole path from button to
decoded layer pixels runs offscreen in tests against a real server.
"""
import time
import traceback
from typing import Any, Callable, Dict, Iterator, List, Optional

from . import reblend_job, server_history
from .canvas_controller import CanvasJobs
from .client import Api, JobOutcome, JobRun
from .connection import ConnectionState, HealthMonitor
from .docker import Panel
from .local_blend import kept_outside
from .lora_picker import LoraCatalog
from .pixels import decode_triplet, in_background, thumbnail
from .qt import QObject, QTimer, pyqtSignal
from .settings import Settings
from .targets import MASK, Documents, HistoryEntry, ReblendSource, Target, UserError, history_label
from .wire import Body, ProtocolError, protocol, serialized, validated


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an unexpected exception in a UI entry point into a plain message in the docker.

    Krita shows a Python traceback dialog for exceptions escaping a slot; the artist gets a sentence
    instead, and the traceback goes to the terminal for bug reports.
    """

    def wrapper(self: "Controller", *args: Any) -> Any:
        try:
            return method(self, *args)
        except Exception as err:  # the last line of defence, by design
            traceback.print_exc()
            self.panel.show_error("Something went wrong: %s" % (err or type(err).__name__))
            return None

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def step_through(steps: Iterator[None], done: Callable[[Any, Optional[BaseException]], None]) -> None:
    """Run one of the document side's step generators, one event-loop turn per step (each is one of
    Krita's costly calls), then ``done(what it returned, error)``; a closed generator ends as None."""

    def turn() -> None:
        try:
            next(steps)
        except StopIteration as finished:
            done(finished.value, None)
        except Exception as err:
            done(None, err)
        else:
            # A 1 ms timer, not 0: a zero one is a posted event, and Qt runs posted events back to
            # back, so the steps would hold the UI thread together (86 ms for a 2048² Blend).
            QTimer.singleShot(1, turn)

    turn()


class Controller(QObject):
    job_finished = pyqtSignal(object)  # JobOutcome, after its layers went in (or failed to)
    inserted = pyqtSignal(object)  # what the document side returned for an insertion

    def __init__(self, panel: Panel, documents: Documents, settings: Settings,
                 save_settings: Optional[Callable[[Settings], None]] = None) -> None:
        super().__init__(panel)
        self.panel = panel
        self.documents = documents
        self.save_settings = save_settings
        self.settings = settings
        self.api = Api(settings.server_url, settings.token, self)
        self.monitor = HealthMonitor(self.api, parent=self)
        self.catalog = LoraCatalog(self.api, self)  # the server's LoRAs, fetched when it connects
        self.runs: List[JobRun] = []
        self.history: Dict[str, HistoryEntry] = {}
        self.reblend_runs: Dict[str, JobRun] = {}  # group key -> its running re-blend
        self._reblend_serial: Dict[str, int] = {}  # group key -> number of its latest re-blend request
        self._encoding: Dict[str, int] = {}  # group key -> serial of its re-blend still being encoded
        self._landing: Dict[str, int] = {}  # group key -> its re-blends done on the server, not yet put in
        self.canvas = CanvasJobs(self)  # Add object, Generate background, Harmonize (canvas_controller.py)
        panel.apply(settings)
        panel.generate_clicked.connect(self.generate)
        panel.reblend_clicked.connect(lambda: self.reblend())
        panel.cancel_clicked.connect(self.cancel_latest)
        panel.select_foreground_clicked.connect(self.select_foreground)
        panel.reinsert_requested.connect(self.reinsert)
        panel.settings_changed.connect(self._settings_changed)
        panel.loras.refresh_requested.connect(self.refresh_loras)
        self.catalog.loaded.connect(panel.loras.set_available)
        self.catalog.failed.connect(lambda why: panel.loras.show_status("Could not list the LoRAs: " + why, True))
        self.monitor.changed.connect(self._connection)
        self._connection(self.monitor.state)
        self.monitor.start()
        self.load_server_history()

    # ---- settings and connection -----------------------------------------------------------------
    def _settings_changed(self) -> None:
        values = self.panel.values()
        if (values.server_url.rstrip("/"), values.token) != (self.api.base_url, self.api.token):
            self.api.base_url, self.api.token = values.server_url.rstrip("/"), values.token
            self.monitor.poll()
        self.settings = values
        if self.save_settings is not None:
            self.save_settings(values)

    def _connection(self, state: ConnectionState) -> None:
        self.panel.set_connection(state.kind, state.text)
        self.panel.show_health(state.health)  # None (offline): whether it has a fast preset is not known
        if state.kind == "connected":  # the monitor reports changes only: once per connection
            self.catalog.fetch()
        if state.kind == "connected" and not self.history:
            self.load_server_history()

    def refresh_loras(self) -> None:
        self.catalog.fetch()  # a click while a request is out is answered by that request

    # ---- generate --------------------------------------------------------------------------------
    @guarded
    def generate(self) -> Optional[JobRun]:
        s = self.panel.values()
        try:
            if not s.foreground_prompt or not s.background_prompt:
                raise UserError("Type a foreground prompt and a background prompt first.")
            target = self.documents.generation_target(s.target_pixels)
            body = validated(protocol.GenerateRequest(
                foreground_prompt=s.foreground_prompt, background_prompt=s.background_prompt,
                negative_prompt=s.negative_prompt, width=target.gen_width, height=target.gen_height,
                blend=protocol.BlendMode(s.blend), guidance=s.guidance, **s.speed_fields(),
                seed=None if s.random_seed else s.seed, loras=s.lora_choices(), options=s.method_options(),
                blend_layers=s.blend_layers and s.blend == protocol.BlendMode.generative.value))
        except UserError as err:
            self.panel.show_error(str(err))
            return None
        except ProtocolError as err:
            self.panel.show_error("Cannot send this request: %s" % err.message)
            return None
        mask = s.insert_mask  # as the option stood when the job was asked for
        maps = ((MASK,) if mask else ()) + (tuple(protocol.LIGHT_NAMES) if body["blend_layers"] else ())
        run = self._start(serialized(body), lambda outcome: self._generated(target, outcome, mask), maps)
        self.panel.show_message("Generating %d×%d…" % (target.gen_width, target.gen_height))
        return run

    def _generated(self, target: Target, outcome: JobOutcome, mask: bool = False) -> None:
        if outcome.state != "done":
            self._report(outcome)
            return
        entry = HistoryEntry(outcome.job_id, history_label(outcome.params), outcome.params, outcome.images)
        self._remember(entry)
        self._insert(target, entry, outcome, mask)

    def _insert(self, target: Target, entry: HistoryEntry, outcome: Optional[JobOutcome] = None,
                mask: bool = False) -> None:
        images = dict(entry.images)
        if not mask:
            images.pop(MASK, None)
        if entry.params.get("blend") == protocol.BlendMode.none.value:
            images.pop("blend", None)

        def inserted(result: Any, error: Optional[BaseException]) -> None:
            if error is not None:  # the adapter rolled back; say why in plain words
                self.panel.show_error("Could not insert the layers: %s" % error)
            else:
                self.panel.show_message("Inserted “%s”." % entry.label)
                self.inserted.emit(result)
            if outcome is not None:
                self.job_finished.emit(outcome)

        def decoded(layers: Any, error: Optional[BaseException]) -> None:
            if error is not None:
                self.panel.show_error("Could not read the result images: %s" % error)
            elif not self.documents.is_open(target.document):
                self.panel.show_message("The document was closed; the result stays in the history.")
            else:
                step_through(self.documents.insert_steps(target, layers, entry.params, entry.job_id), inserted)
                return
            if outcome is not None:
                self.job_finished.emit(outcome)

        in_background(lambda: decode_triplet(images, target.width, target.height), decoded)


    # ---- re-blend --------------------------------------------------------------------------------
    @guarded
    def reblend(self, source: Optional[ReblendSource] = None) -> bool:
        """Start a re-blend of the active group (or ``source``); a running one for that group is dropped."""
        s = self.panel.values()
        try:
            if source is None:
                source = self.documents.reblend_source()
        except UserError as err:
            self.panel.show_error(str(err))
            return False
        self.cancel_reblend(source.group_key)
        asked = time.monotonic()  # the latency the docker shows: from asking to the new Blend in place
        serial = self._reblend_serial[source.group_key] = self._reblend_serial.get(source.group_key, 0) + 1
        known = dict(source.pngs)  # the pool reads this copy; the UI thread alone writes source.pngs

        def encoded(upload: Any, error: Optional[BaseException]) -> None:
            if self._encoding.get(source.group_key) == serial:
                del self._encoding[source.group_key]
            if self._reblend_serial.get(source.group_key) != serial:
                return  # a newer re-blend of this group was asked for while this one was encoding
            if isinstance(error, ProtocolError):
                self.panel.show_error("Cannot send this re-blend: %s" % error.message)
                return
            if error is not None:
                self.panel.show_error("Could not read the layers: %s" % error)
                return
            pngs, body = upload
            # a later read of the same drag may take these over (the Foreground it reads anew)
            source.pngs.update((name, png) for name, png in pngs.items() if name != "foreground")
            run = self._start(body, lambda outcome: self._reblended(source, outcome, asked))
            self.reblend_runs[source.group_key] = run

        self.panel.show_message("Re-blending…")
        self._encoding[source.group_key] = serial
        in_background(lambda: reblend_job.upload(source, s, known), encoded)
        return True

    def cancel_reblend(self, group_key: str) -> None:
        """Drop the group's running re-blend: it was made for a placement that no longer holds."""
        self._reblend_serial[group_key] = self._reblend_serial.get(group_key, 0) + 1
        stale = self.reblend_runs.pop(group_key, None)
        if stale is not None:
            stale.cancel()

    def reblend_busy(self, group_key: str) -> bool:
        """Whether a re-blend of the group is being encoded, runs or is being put in (a superseded one
        does not count)."""
        encoding = self._encoding.get(group_key)
        return (group_key in self.reblend_runs or self._landing.get(group_key, 0) > 0
                or (encoding is not None and encoding == self._reblend_serial.get(group_key)))

    def _reblended(self, source: ReblendSource, outcome: JobOutcome, asked: float) -> None:
        current = self.reblend_runs.get(source.group_key)
        if current is not None and current.job_id == outcome.job_id:
            del self.reblend_runs[source.group_key]
        elif outcome.state in ("done", "cancelled"):
            # superseded: its blend is for an old placement, and its cancelling is no news (the end of
            # a drag cancels a stale live re-blend); the newer one's message stays
            self.job_finished.emit(outcome)
            return
        if outcome.state != "done" or "blend" not in outcome.images:
            self._report(outcome if outcome.state != "done" else
                         JobOutcome(outcome.job_id, outcome.kind, "failed", error="the server sent no blend"))
            return
        t = source.target
        key = source.group_key
        self._landing[key] = self._landing.get(key, 0) + 1

        def landed(_node: Any, error: Optional[BaseException]) -> None:
            self._landing[key] -= 1
            if error is not None:
                self.panel.show_error("Could not replace the blend: %s" % error)
            else:
                where = "around the move" if "local_region" in outcome.params else "everywhere"
                took = time.monotonic() - asked
                self.panel.show_message("Blend regenerated %s in %.1f s." % (where, took))
                self.panel.show_latency(took)
            self.job_finished.emit(outcome)

        def decoded(layers: Any, error: Optional[BaseException]) -> None:
            if error is None and self.documents.is_open(source.document):
                step_through(self.documents.replace_steps(source, layers["blend"], outcome.params), landed)
                return
            if error is not None:
                self.panel.show_error("Could not read the new blend: %s" % error)
            else:
                self.panel.show_message("The document was closed; the re-blend was dropped.")
            self._landing[key] -= 1
            self.job_finished.emit(outcome)

        in_background(lambda: kept_outside(source, outcome.params, decode_triplet(
            {"blend": outcome.images["blend"]}, t.width, t.height)), decoded)

    # ---- jobs ------------------------------------------------------------------------------------
    def _start(self, body: Body, done: Callable[[JobOutcome], None], maps: Any = ()) -> JobRun:
        run = JobRun(self.api, body, self, maps)
        self.runs.append(run)
        run.progress.connect(lambda step, total, phase: self._progress(run, step, total, phase))
        run.preview.connect(lambda png: self._preview(run, png))

        def finished(outcome: JobOutcome) -> None:
            self.runs.remove(run)
            self.panel.set_running(bool(self.runs))
            run.deleteLater()
            done(outcome)

        run.finished.connect(finished)
        self.panel.set_running(True)
        run.start()
        return run

    def _progress(self, run: JobRun, step: int, total: int, phase: str) -> None:
        if self.runs and self.runs[-1] is run:  # the bar follows the newest job
            self.panel.set_progress(step, total, phase)

    def _preview(self, run: JobRun, png: bytes) -> None:
        if self.runs and self.runs[-1] is run:
            self.panel.preview.show_png(png)

    @guarded
    def cancel_latest(self) -> None:
        if self.runs:
            self.runs[-1].cancel()
            self.panel.show_message("Cancelling…")

    def cancel_all(self) -> None:
        for run in list(self.runs):
            run.cancel()

    def _report(self, outcome: JobOutcome) -> None:
        what = "Re-blend" if outcome.kind == "reblend" else "Generation"
        if outcome.state == "cancelled":
            self.panel.show_message("%s cancelled." % what)
        else:
            self.panel.show_error("%s failed: %s" % (what, outcome.error))
        self.job_finished.emit(outcome)

    # ---- history ---------------------------------------------------------------------------------
    def _remember(self, entry: HistoryEntry) -> None:
        self.history[entry.job_id] = entry
        while len(self.history) > max(1, self.settings.history_limit) * 2:
            del self.history[next(iter(self.history))]
        png = entry.images.get("blend") or entry.images.get("foreground")
        if png is None:
            self.panel.add_history(entry.job_id, entry.label, None)
            return
        in_background(lambda: thumbnail(png), lambda thumb, err: self.panel.add_history(
            entry.job_id, entry.label, None if err else thumb))

    def load_server_history(self) -> None:
        """Earlier results from the server's job list, appended below the session's own."""
        server_history.load(self.api, self.history, self.settings.history_limit, self.panel.add_history)

    @guarded
    def reinsert(self, job_id: str) -> None:
        entry = self.history.get(job_id)
        if entry is None:
            return
        try:
            target = self.documents.generation_target(self.panel.values().target_pixels)
        except UserError as err:
            self.panel.show_error(str(err))
            return
        mask = self.panel.values().insert_mask
        if entry.images and (MASK in entry.images or not mask):
            self._insert(target, entry, mask=mask)
            return
        run = JobRun(self.api, Body("generate", b""), self, (MASK,) if mask else ())

        def fetched(outcome: JobOutcome) -> None:
            run.deleteLater()
            if outcome.state != "done":
                self.panel.show_error("Could not fetch that result again: %s" % outcome.error)
                return
            entry.images = outcome.images
            self._insert(target, entry, mask=mask)

        run.finished.connect(fetched)
        run.attach(job_id)

    @guarded
    def select_foreground(self) -> bool:
        try:
            self.documents.select_foreground()
        except UserError as err:
            self.panel.show_error(str(err))
            return False
        self.panel.show_message("Selected the foreground's alpha.")
        return True

    def shutdown(self) -> None:
        self.monitor.stop()
        self.cancel_all()
