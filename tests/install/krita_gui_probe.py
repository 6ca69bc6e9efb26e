"""A second Krita plugin, put beside the installed one by the GUI test only (never by install.py).

Once Krita's window exists it records whether Krita itself imported ``layerfusion`` at start-up, which
dockers exist, then quits Krita.
"""
import json
import os
import sys

from krita import Extension, Krita
from PyQt5.QtCore import QTimer


class LayerFusionProbe(Extension):
    def setup(self):
        pass

    def createActions(self, window):
        QTimer.singleShot(2000, self.report)

    def report(self):
        module = sys.modules.get("layerfusion")
        result = {
            "loaded": module is not None,
            "package_file": getattr(module, "__file__", None),
            "shared_loaded": "layerfusion._shared.protocol" in sys.modules,
            "dockers": sorted(d.objectName() for d in Krita.instance().dockers()),
        }
        with open(os.environ["LF_PROBE_OUT"], "w") as out:
            json.dump(result, out, indent=2)
        Krita.instance().action("file_quit").trigger()


Krita.instance().addExtension(LayerFusionProbe(Krita.instance()))
