"""Runs INSIDE real Krita (kritarunner): the canvas jobs end to end, from the controller through the live
tiny backend into painted documents, then a re-blend of the added object.

Started by test_krita_canvas.py like scenario_layers.py: config in, facts file out.
"""

import os

from scenario_canvas import artist_state, painted, tree
from scenario_layers import spin
from scenario_report import report


def run(cfg, facts):
    from krita import Krita, Selection

    from layerfusion.controller import Controller
    from layerfusion.docker import Panel
    from layerfusion.layers import find_group
    from layerfusion.reblend import KritaSide, blend_layers
    from layerfusion.settings import Settings

    app = Krita.instance()
    doc = painted(app, "jobs-object")
    side = KritaSide(doc)
    panel = Panel()
    settings = Settings(server_url=cfg["url"], foreground_prompt="a green ball", background_prompt="a meadow",
                        steps=2, seed=5, random_seed=False, target_pixels=96 * 96, blend_layers=True)
    controller = Controller(panel, side, settings)
    finished = []
    controller.job_finished.connect(finished.append)

    art = artist_state(doc)
    selection = Selection()
    selection.select(40, 30, 48, 40, 255)
    doc.setSelection(selection)
    facts["object_started"] = controller.canvas.start("add_foreground")
    spin(lambda: len(finished) == 1)
    doc.waitForDone()
    facts["object_state"] = [finished[0].state, panel.message.text()]
    group = find_group(doc)
    facts["object_group"] = group.name() if group else None
    facts["object_tree"] = [row[1] for row in tree(group)] if group else None
    facts["object_artist_untouched"] = artist_state(doc) == art

    controller.reblend()  # the active node is the new Foreground: its group is re-blended
    spin(lambda: len(finished) == 2)
    doc.waitForDone()
    facts["object_reblend"] = [finished[1].state, panel.message.text()]
    facts["object_blends_after_reblend"] = [n.name() for n in blend_layers(doc, group)]
    facts["object_tree_after_reblend"] = [row[1] for row in tree(group)]
    facts["object_artist_untouched_after_reblend"] = artist_state(doc) == art
    doc.close()

    for kind, names in (("add_background", ["cat"]), ("harmonize", ["cat", "cup"])):
        doc = painted(app, "jobs-" + kind)
        side.document = doc
        art = artist_state(doc)
        nodes = [n for n in doc.rootNode().childNodes() if n.name() in names]
        count = len(finished) + 1
        facts[kind + "_started"] = controller.canvas.start(kind, nodes)
        spin(lambda n=count: len(finished) == n)
        doc.waitForDone()
        facts[kind + "_state"] = [finished[-1].state, panel.message.text()]
        facts[kind + "_top_level"] = [n.name() for n in doc.rootNode().childNodes()]
        facts[kind + "_artist_untouched"] = artist_state(doc) == art
        if kind == "add_background":  # saved, reopened, and the group re-blended from the .kra
            path = os.path.join(cfg["workdir"], "jobs-background.kra")
            doc.setBatchmode(True)
            facts["reopen_saved"] = bool(doc.saveAs(path))
            doc.close()
            doc = app.openDocument(path)
            doc.waitForDone()
            side.document = doc
            group = find_group(doc)
            facts["reopen_group"] = group.name() if group else None
            count = len(finished) + 1
            facts["reopen_reblend_started"] = controller.reblend()
            spin(lambda n=count: len(finished) == n)
            doc.waitForDone()
            facts["reopen_reblend"] = [finished[-1].state, panel.message.text()]
            facts["reopen_blends"] = [n.name() for n in blend_layers(doc, group)] if group else None
        doc.close()

    # Generate into layers with the blend as layers: the same split inside the generated group.
    doc = app.createDocument(160, 128, "jobs-generate", "RGBA", "U8", "", 300.0)
    side.document = doc
    controller.generate()
    spin(lambda: len(finished) == 6)
    doc.waitForDone()
    facts["generate_state"] = [finished[-1].state, panel.message.text()]
    group = find_group(doc)
    facts["generate_tree"] = tree(group)
    controller.reblend()
    spin(lambda: len(finished) == 7)
    doc.waitForDone()
    facts["generate_reblend"] = [finished[-1].state, panel.message.text()]
    facts["generate_tree_after_reblend"] = [row[1] for row in tree(group)]
    doc.close()
    controller.shutdown()
    panel.deleteLater()
    spin(lambda: True)


def __main__(args):
    report(run)
