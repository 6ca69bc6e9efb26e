"""The only module of the plugin that imports PyQt5, so a PyQt6 port for Krita 6 is one change here."""
from PyQt5 import sip  # noqa: F401  (re-exported for voidptr handling)
from PyQt5.QtCore import (  # noqa: F401
    QBuffer,
    QByteArray,
    QIODevice,
    QObject,
    QProcess,
    QProcessEnvironment,
    QRect,
    QRunnable,
    QSettings,
    QSize,
    Qt,
    QThreadPool,
    QTimer,
    QUrl,
    QUuid,
    pyqtSignal,
)
from PyQt5.QtGui import QColor, QIcon, QImage, QKeySequence, QPainter, QPixmap  # noqa: F401
from PyQt5.QtNetwork import QNetworkAccessManager, QNetworkReply, QNetworkRequest  # noqa: F401
from PyQt5.QtWidgets import (  # noqa: F401
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

NETWORK_ERROR_NONE = QNetworkReply.NoError
CONNECTION_REFUSED = QNetworkReply.ConnectionRefusedError
OPERATION_CANCELED = QNetworkReply.OperationCanceledError
HTTP_STATUS = QNetworkRequest.HttpStatusCodeAttribute
