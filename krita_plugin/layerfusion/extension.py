"""Krita's side of the plugin: the docker wrapper, the Tools actions and shutdown handling."""
from typing import List, Optional

from krita import DockWidget, Extension, Krita  # type: ignore[import-not-found]

from . import settings as settings_store
from .auto_reblend import AutoReblend
from .controller import Controller
from .docker import Panel
from .qt import QScrollArea, QTimer, sip
from .reblend import KritaSide
from .server_process import LocalServer
from .targets import UserError

DOCKER_ID = "layerfusion_docker"
ACTION_GENERATE = "layerfusion_generate"
ACTION_REBLEND = "layerfusion_reblend"
ACTION_SELECT_FOREGROUND = "layerfusion_select_foreground"
# Jobs on the artist's own layers: action id -> (menu text, job kind)
CANVAS_ACTIONS = {
    "layerfusion_add_object": ("Add object as layer", "add_foreground"),
    "layerfusion_add_background": ("Generate background for layer", "add_background"),
    "layerfusion_harmonize": ("Harmonize selected layers", "harmonize"),
}


class _Core:
    """State shared by every window: the document side, the local server, the dockers' controllers."""

    def __init__(self) -> None:
        self.side = KritaSide()
        self.server = LocalServer()
        self.controllers: List[Controller] = []
        self._closing_hooked = False

    def current(self) -> Optional[Controller]:
        for controller in self.controllers:
            if controller.panel.isVisible():
                return controller
        return self.controllers[0] if self.controllers else None

    def hook_closing(self) -> None:
        if not self._closing_hooked:
            Krita.instance().notifier().applicationClosing.connect(self.shutdown)
            self._closing_hooked = True

    def shutdown(self) -> None:
        # Krita may have deleted a docker (and the controller it parents) before it says it is closing;
        # touching such an object raises, and an error dialog would keep Krita from quitting.
        for controller in self.controllers:
            if not sip.isdeleted(controller):
                controller.shutdown()
        self.controllers = []
        self.server.stop()


CORE = _Core()


class LayerFusionExtension(Extension):
    def setup(self) -> None:
        CORE.hook_closing()

    def createActions(self, window) -> None:  # Krita's name (camelCase)
        # Tools > Scripts; shortcuts are set in Settings > Configure Krita > Keyboard Shortcuts.
        generate = window.createAction(ACTION_GENERATE, "Generate into layers", "tools/scripts")
        generate.triggered.connect(lambda: self._run("generate"))
        reblend = window.createAction(ACTION_REBLEND, "Regenerate blend", "tools/scripts")
        reblend.triggered.connect(lambda: self._run("reblend"))
        select = window.createAction(ACTION_SELECT_FOREGROUND, "Select foreground", "tools/scripts")
        select.triggered.connect(lambda: self._run("select_foreground"))
        for action_id, (text, kind) in CANVAS_ACTIONS.items():
            action = window.createAction(action_id, text, "tools/scripts")
            action.triggered.connect(lambda _checked=False, k=kind: self._run_canvas(k))

    def _run_canvas(self, kind: str) -> None:
        controller = CORE.current()
        if controller is not None:
            controller.canvas.start(kind)  # messages, progress and results in the docker
        else:
            print("LayerFusion: open the LayerFusion docker (Settings > Dockers) to run this")

    def _run(self, what: str) -> None:
        controller = CORE.current()
        if controller is not None:
            getattr(controller, what)()  # generate, reblend, select_foreground: messages in the docker
        elif what == "select_foreground":  # needs no server, so it works without the docker too
            try:
                CORE.side.select_foreground()
            except UserError as err:
                print("LayerFusion:", err)  # no docker to say it in


class LayerFusionDocker(DockWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("LayerFusion")
        self.setObjectName(DOCKER_ID)
        self.panel = Panel()
        scroll = QScrollArea()  # the panel is taller than a docker usually is
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.panel)
        self.setWidget(scroll)
        store = settings_store.default_store()
        self.controller = Controller(self.panel, CORE.side, settings_store.load(store),
                                     lambda values: settings_store.save(store, values))
        CORE.controllers.append(self.controller)
        CORE.hook_closing()
        self.auto = AutoReblend(self.controller, CORE.side)
        self.panel.auto_reblend.toggled.connect(self.auto.set_enabled)
        self.auto.set_enabled(self.panel.auto_reblend.isChecked())
        self.panel.start_server_clicked.connect(lambda: CORE.server.start(self.panel.values().server_url))
        CORE.server.message.connect(self.panel.show_message)
        self.panel.stop_server_clicked.connect(CORE.server.request_stop)
        CORE.server.running_changed.connect(self.panel.set_own_server)
        self.panel.set_own_server(CORE.server.running())
        CORE.server.message.connect(lambda _m: QTimer.singleShot(1000, self.controller.monitor.poll))

    def canvasChanged(self, canvas) -> None:  # Krita's name (camelCase)
        pass  # the controller always asks Krita for the active document when it acts
