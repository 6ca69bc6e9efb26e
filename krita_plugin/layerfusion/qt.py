"""The only module of the plugin that imports Qt: PyQt5 in Krita 5, PyQt6 in Krita 6.

Which binding: inside Krita, the one Krita runs on (it refuses the other); outside Krita (tests,
scripts) ``LAYERFUSION_QT`` ("PyQt5" or "PyQt6") picks one, else PyQt5 if it imports, else PyQt6.
The rest of the plugin writes what both accept: fully scoped enums (``Qt.ItemDataRole.UserRole``,
``QImage.Format.Format_ARGB32``), ``exec()``, ``QImage.sizeInBytes()``; the few names that moved
between the two (``QAction``, ``sip``) are re-exported from here.
"""
import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any, Optional, Tuple

BINDINGS = ("PyQt5", "PyQt6")


def _krita_qt_major() -> Optional[int]:
    """The Qt major version of the Krita this runs in, or None outside Krita."""
    if "krita" not in sys.modules and importlib.util.find_spec("krita") is None:
        return None
    for name in ("pykrita", "krita"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        ask = getattr(module, "qt_major_version", None)
        if callable(ask):
            return int(ask())
    # A Krita without the question is a Krita 5 (Krita 6 asks first): whichever binding is loaded.
    for binding in BINDINGS:
        if binding in sys.modules:
            return int(binding[-1])
    return None


def choose_binding(wanted: Optional[str], krita_major: Optional[int]) -> Tuple[str, ...]:
    """The bindings to try, in order: Krita's own, else the one asked for, else both."""
    if krita_major is not None:
        return ("PyQt%d" % krita_major,)
    if wanted:
        if wanted not in BINDINGS:
            raise ImportError("LAYERFUSION_QT is %r: it must be one of %s" % (wanted, ", ".join(BINDINGS)))
        return (wanted,)
    return BINDINGS


def _load() -> Tuple[str, ModuleType, ModuleType, ModuleType, ModuleType, ModuleType]:
    errors = []
    for binding in choose_binding(os.environ.get("LAYERFUSION_QT"), _krita_qt_major()):
        try:
            parts = [importlib.import_module("%s.%s" % (binding, part))
                     for part in ("QtCore", "QtGui", "QtNetwork", "QtWidgets")]
            sip_module = importlib.import_module("%s.sip" % binding)
        except ImportError as err:
            errors.append("%s: %s" % (binding, err))
            continue
        return (binding, *parts, sip_module)  # type: ignore[return-value]
    raise ImportError("LayerFusion needs PyQt5 or PyQt6 (%s)" % "; ".join(errors))


API, _core, _gui, _network, _widgets, sip = _load()
QT_MAJOR = int(API[-1])

QBuffer: Any = _core.QBuffer
QByteArray: Any = _core.QByteArray
QIODevice: Any = _core.QIODevice
QObject: Any = _core.QObject
QPoint: Any = _core.QPoint
QProcess: Any = _core.QProcess
QProcessEnvironment: Any = _core.QProcessEnvironment
QRect: Any = _core.QRect
QRunnable: Any = _core.QRunnable
QSettings: Any = _core.QSettings
QSize: Any = _core.QSize
Qt: Any = _core.Qt
QThreadPool: Any = _core.QThreadPool
QTimer: Any = _core.QTimer
QUrl: Any = _core.QUrl
QUuid: Any = _core.QUuid
pyqtSignal: Any = _core.pyqtSignal

# QAction moved from QtWidgets to QtGui in Qt 6.
QAction: Any = getattr(_gui, "QAction", None) or _widgets.QAction
QColor: Any = _gui.QColor
QIcon: Any = _gui.QIcon
QImage: Any = _gui.QImage
QImageReader: Any = _gui.QImageReader
QKeySequence: Any = _gui.QKeySequence
QPainter: Any = _gui.QPainter
QPixmap: Any = _gui.QPixmap

QNetworkAccessManager: Any = _network.QNetworkAccessManager
QNetworkReply: Any = _network.QNetworkReply
QNetworkRequest: Any = _network.QNetworkRequest

QApplication: Any = _widgets.QApplication
QCheckBox: Any = _widgets.QCheckBox
QComboBox: Any = _widgets.QComboBox
QDoubleSpinBox: Any = _widgets.QDoubleSpinBox
QFormLayout: Any = _widgets.QFormLayout
QGroupBox: Any = _widgets.QGroupBox
QHBoxLayout: Any = _widgets.QHBoxLayout
QLabel: Any = _widgets.QLabel
QLayout: Any = _widgets.QLayout
QLineEdit: Any = _widgets.QLineEdit
QListWidget: Any = _widgets.QListWidget
QListWidgetItem: Any = _widgets.QListWidgetItem
QPlainTextEdit: Any = _widgets.QPlainTextEdit
QProgressBar: Any = _widgets.QProgressBar
QPushButton: Any = _widgets.QPushButton
QScrollArea: Any = _widgets.QScrollArea
QSizePolicy: Any = _widgets.QSizePolicy
QSpinBox: Any = _widgets.QSpinBox
QToolButton: Any = _widgets.QToolButton
QVBoxLayout: Any = _widgets.QVBoxLayout
QWidget: Any = _widgets.QWidget

NETWORK_ERROR_NONE = QNetworkReply.NetworkError.NoError
CONNECTION_REFUSED = QNetworkReply.NetworkError.ConnectionRefusedError
OPERATION_CANCELED = QNetworkReply.NetworkError.OperationCanceledError
HTTP_STATUS = QNetworkRequest.Attribute.HttpStatusCodeAttribute


def krita_dock_right(factory_base: Any) -> Any:
    """Krita's DockRight position: scoped (``DockPosition.DockRight``) in Krita 6, flat in Krita 5."""
    scoped = getattr(factory_base, "DockPosition", None)
    return scoped.DockRight if scoped is not None else factory_base.DockRight
