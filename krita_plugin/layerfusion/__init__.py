"""LayerFusion for Krita: registers the docker and the Tools actions when loaded by Krita.

Imported outside Krita (unit tests), it registers nothing: the widget and client modules stand alone.
"""
try:
    from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita  # type: ignore[import-not-found]
except ImportError:  # not inside Krita
    Krita = None

if Krita is not None:
    from .extension import DOCKER_ID, LayerFusionDocker, LayerFusionExtension
    from .qt import krita_dock_right

    _app = Krita.instance()
    _app.addExtension(LayerFusionExtension(_app))
    _app.addDockWidgetFactory(
        DockWidgetFactory(DOCKER_ID, krita_dock_right(DockWidgetFactoryBase), LayerFusionDocker)
    )
