"""Runs INSIDE real Krita (kritarunner): the optional Mask layer and Select foreground.

Started by test_krita_mask.py like scenario_layers.py: a JSON config named by LF_SCENARIO_CONFIG in,
a facts file out; the assertions live in the test.
"""

from scenario_layers import bgra, spin
from scenario_report import report


def grey_of(image):
    """Rows of grey values of a QImage (converted to Grayscale8), packed."""
    from PyQt5.QtGui import QImage

    image = image.convertToFormat(QImage.Format_Grayscale8)
    ptr = image.constBits()
    ptr.setsize(image.bytesPerLine() * image.height())
    data, stride = bytes(ptr), image.bytesPerLine()
    return [data[y * stride : y * stride + image.width()] for y in range(image.height())]


def nearest(rows, w, h):
    """An independent reference: nearest-neighbour resampling of ``rows`` to w x h, packed."""
    ph, pw = len(rows), len(rows[0])
    return bytes(rows[min(ph - 1, int((j + 0.5) * ph / h))][min(pw - 1, int((i + 0.5) * pw / w))]
                 for j in range(h) for i in range(w))


def selection_matches_alpha(doc, node, w, h):
    """Whether the document's selection, over the whole canvas, is exactly ``node``'s alpha."""
    selection = doc.selection()
    if selection is None:
        return False
    return bytes(selection.pixelData(0, 0, w, h)) == bgra(node, 0, 0, w, h)[3::4]


def run(cfg, facts):
    from krita import Krita, Selection
    from PyQt5.QtCore import QByteArray
    from PyQt5.QtGui import QImage

    from layerfusion.controller import Controller
    from layerfusion.docker import Panel
    from layerfusion.layers import find_group, member
    from layerfusion.reblend import KritaSide, blend_layers
    from layerfusion.settings import Settings
    from layerfusion.targets import MASK, UserError

    W, H = cfg["width"], cfg["height"]
    x, y, w, h = cfg["rect"]
    app = Krita.instance()
    doc = app.createDocument(W, H, "lf-mask", "RGBA", "U8", "", 300.0)
    side = KritaSide(doc)
    panel = Panel()
    settings = Settings(server_url=cfg["url"], foreground_prompt="a wine glass", background_prompt="a wooden table",
                        steps=2, seed=7, random_seed=False, target_pixels=128 * 128, insert_mask=True)
    controller = Controller(panel, side, settings)
    finished = []
    controller.job_finished.connect(finished.append)

    selection = Selection()
    selection.select(x, y, w, h, 255)
    doc.setSelection(selection)  # the target: a rectangle whose model size is scaled back to it
    controller.generate()
    spin(lambda: len(finished) == 1)
    doc.waitForDone()
    facts["generate_state"] = finished[0].state
    facts["message"] = panel.message.text()
    facts["fetched"] = sorted(finished[0].images)
    group = find_group(doc)
    facts["children"] = [[n.name(), bool(n.visible())] for n in group.childNodes()]
    mask = member(doc, group, MASK)
    b = mask.bounds()
    facts["mask_bounds"] = [b.x(), b.y(), b.width(), b.height()]
    png = finished[0].images[MASK]
    image = QImage.fromData(png, "PNG")
    facts["png_size"] = [image.width(), image.height()]
    facts["png_grey"] = image.isGrayscale()
    got = bgra(mask, x, y, w, h)
    facts["mask_opaque_grey"] = set(got[3::4]) == {255} and got[0::4] == got[1::4] == got[2::4]
    values = got[0::4]
    facts["mask_levels"] = [min(values), max(values)]
    ref = nearest(grey_of(image), w, h)
    diffs = [abs(a - r) for a, r in zip(values, ref)]
    facts["mask_vs_nearest_mean"] = sum(diffs) / len(diffs)
    facts["mask_vs_nearest_far_share"] = sum(1 for d in diffs if d > 64) / len(diffs)
    facts["png_levels"] = [min(ref), max(ref)]
    whole = bgra(mask, 0, 0, W, H)
    facts["mask_outside_rect_empty"] = all(
        whole[(j * W + i) * 4 + 3] == 0 for j in range(H) for i in range(W)
        if not (x <= i < x + w and y <= j < y + h))
    facts["blend_layers"] = [n.name() for n in blend_layers(doc, group)]

    # A re-blend leaves the Mask alone (it is no blend layer to retire).
    controller.reblend()
    spin(lambda: len(finished) == 2)
    facts["reblend_state"] = finished[1].state
    facts["children_after_reblend"] = [n.name() for n in group.childNodes()]
    facts["mask_kept"] = bgra(member(doc, group, MASK), x, y, w, h) == got

    # Select foreground: from the group, from one of its other layers, after a move off the canvas.
    fg = member(doc, group, "foreground")
    fg_alpha = bgra(fg, 0, 0, W, H)[3::4]
    facts["fg_alpha_levels"] = len(set(fg_alpha))
    doc.setSelection(Selection())
    # kritarunner has no view, so no active node (setActiveNode does nothing): the node is passed here,
    # and the GUI self-test triggers the action on the real active node.
    for label, node in (("group", group), ("background", member(doc, group, "background")), ("mask", mask)):
        doc.setSelection(Selection())
        facts["select_from_" + label] = side.select_foreground(node=node).name()
        facts["selection_is_alpha_" + label] = selection_matches_alpha(doc, fg, W, H)
    pos = fg.position()
    fg.move(pos.x() - (x + w // 2), pos.y())  # half of it off the canvas's left edge
    doc.waitForDone()
    side.select_foreground(node=fg)
    facts["selection_is_alpha_moved"] = selection_matches_alpha(doc, fg, W, H)

    # Any other paint layer: its own alpha.
    paint = doc.createNode("Paint", "paintlayer")
    pw, ph = 40, 30
    pixels = bytearray()
    for j in range(ph):
        for i in range(pw):
            pixels += bytes((10, 20, 30, (i * 6 + j) % 256))
    paint.setPixelData(QByteArray(bytes(pixels)), 5, 6, pw, ph)
    doc.rootNode().addChildNode(paint, None)
    doc.waitForDone()
    facts["select_from_paint"] = side.select_foreground(node=paint).name()
    facts["selection_is_alpha_paint"] = selection_matches_alpha(doc, paint, W, H)

    # No such layer: a plain message in the panel, not a traceback; the selection stays as it was.
    before = bytes(doc.selection().pixelData(0, 0, W, H))
    facts["active_node"] = None if doc.activeNode() is None else doc.activeNode().name()
    facts["controller_no_active"] = controller.select_foreground()
    facts["message_no_active"] = [panel.message.text(), bool(panel.message.property("error"))]
    for label, node in (("other_group", doc.createGroupLayer("Other")), ("empty", doc.createNode("Empty", "paintlayer"))):
        doc.rootNode().addChildNode(node, None)
        try:
            side.select_foreground(node=node)
            facts["error_" + label] = None
        except UserError as err:
            facts["error_" + label] = str(err)
    facts["selection_unchanged"] = bytes(doc.selection().pixelData(0, 0, W, H)) == before
    doc.setModified(False)
    doc.close()
    controller.shutdown()
    panel.deleteLater()
    spin(lambda: True)


def __main__(args):
    report(run)
