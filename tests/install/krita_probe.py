"""Runs inside real Krita (kritarunner -s krita_probe): finds, imports and reports the installed plugin.

Writes a JSON report to $LF_PROBE_OUT, because kritarunner's exit status says nothing. With $LF_PROBE_ZIP
set it first imports that archive with Krita's own "Import Python Plugin from File" code.
"""
import importlib
import json
import os
import sys
import traceback


def _inspect(pykrita):
    """What Krita's plugin manager sees in one pykrita folder, then the package imported from there."""
    from PyQt5.QtCore import QSettings

    desktop = QSettings(os.path.join(pykrita, "layerfusion.desktop"), QSettings.IniFormat)
    report = {
        "pykrita": pykrita,
        "library": desktop.value("Desktop Entry/X-KDE-Library"),
        "service": desktop.value("Desktop Entry/ServiceTypes"),
    }
    sys.path.insert(0, pykrita)  # what Krita's plugin manager does before importing an enabled plugin
    try:
        package = importlib.import_module("layerfusion")
        protocol = importlib.import_module("layerfusion._shared.protocol")
        report["package_file"] = package.__file__
        report["protocol_file"] = protocol.__file__
    except Exception:
        report["import_error"] = traceback.format_exc()
    finally:
        sys.path.remove(pykrita)
    return report


def __main__(args):
    report = {"python": sys.version.split()[0]}
    try:
        from krita import Krita
        from PyQt5.QtCore import QSettings, QStandardPaths

        report["krita"] = Krita.instance().version()
        # Krita (the application, not kritarunner) keeps its resources in GenericDataLocation/krita
        # and its settings in GenericConfigLocation/kritarc.
        data = QStandardPaths.writableLocation(QStandardPaths.GenericDataLocation)
        config = QStandardPaths.writableLocation(QStandardPaths.GenericConfigLocation)
        kritarc = QSettings(os.path.join(config, "kritarc"), QSettings.IniFormat)
        report["enabled"] = kritarc.value("python/enable_layerfusion")
        archive = os.environ.get("LF_PROBE_ZIP")
        if archive:
            from plugin_importer.plugin_importer import PluginImporter

            resources = os.environ["LF_PROBE_RESOURCES"]
            imported = PluginImporter(archive, resources, lambda plugin: True).import_all()
            report["imported"] = [plugin["name"] for plugin in imported]
            report["installed"] = _inspect(os.path.join(resources, "pykrita"))
        else:
            report["installed"] = _inspect(os.path.join(data, "krita", "pykrita"))
    except Exception:
        report["error"] = traceback.format_exc()
    with open(os.environ["LF_PROBE_OUT"], "w") as out:
        json.dump(report, out, indent=2)
