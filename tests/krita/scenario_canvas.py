"""Runs INSIDE real Krita (kritarunner): the canvas jobs' reading and layer placement, no server.

The result images are PNGs made here (the server's share is tested elsewhere); they go through the
plugin's own decoding (pixels.decode_triplet) and the document side (canvas_layers.py) into painted
documents. Started by test_krita_canvas.py like scenario_layers.py: config in, facts file out.
"""
import os

from scenario_report import report

W, H = 160, 128


def pixel(data, x, y, w=W):
    i = (y * w + x) * 4
    return list(data[i : i + 4])


def paint(doc, name, fn, node=None):
    """A paint layer filled by fn(x, y) -> (b, g, r, a), added on top (or ``node`` refilled)."""
    from PyQt5.QtCore import QByteArray

    out = bytearray(W * H * 4)
    for y in range(H):
        for x in range(W):
            i = (y * W + x) * 4
            out[i : i + 4] = bytes(fn(x, y))
    if node is None:
        node = doc.createNode(name, "paintlayer")
        doc.rootNode().addChildNode(node, None)
    node.setPixelData(QByteArray(bytes(out)), 0, 0, W, H)
    return node


def disc(cx, cy, r, colour):
    def fn(x, y):
        d2 = (x - cx) ** 2 + (y - cy) ** 2
        if d2 <= r * r:
            return colour + (255,)
        if d2 <= (r + 4) ** 2:
            return colour + (128,)
        return (0, 0, 0, 0)
    return fn


def cup(x, y):
    return (200, 50, 20, 200) if 100 <= x < 140 and 40 <= y < 90 else (0, 0, 0, 0)


def painted(app, name):
    """Background (opaque gradient), cat (a disc with a soft ring), cup (a half-transparent box)."""
    doc = app.createDocument(W, H, name, "RGBA", "U8", "", 300.0)
    [background] = list(doc.rootNode().childNodes())
    paint(doc, "", lambda x, y: (x, y, (x + y) % 256, 255), background)
    paint(doc, "cat", disc(60, 64, 24, (20, 30, 200)))
    paint(doc, "cup", cup)
    doc.lf_artist = [n.uniqueId().toString() for n in doc.rootNode().childNodes()]
    doc.refreshProjection()
    doc.waitForDone()
    return doc


ARTIST = ("Background", "cat", "cup")


def artist_state(doc):
    """Per artist layer (the painted document's own three, by id): pixels, offset, blend mode, opacity,
    visibility, parent, place among its siblings' artist layers."""
    from PyQt5.QtCore import QUuid

    out = {}
    for key in doc.lf_artist:
        node = doc.nodeByUniqueID(QUuid(key))
        out[node.name()] = (bytes(node.pixelData(0, 0, W, H)), node.position().x(), node.position().y(),
                            node.blendingMode(), node.opacity(), node.visible(), node.parentNode().name(),
                            [n.uniqueId().toString() for n in node.parentNode().childNodes()
                             if n.uniqueId().toString() in doc.lf_artist])
    return out


def walk(parent):
    for node in parent.childNodes():
        yield node
        if node.type() == "grouplayer":
            yield from walk(node)


def tree(parent, depth=0):
    """The layer tree, bottom first: [depth, name, type, blend mode, visible, inherit alpha, pass-through]."""
    out = []
    for node in parent.childNodes():
        if node.type().endswith("mask"):
            continue  # the global selection's mask moves about on saving
        through = node.passThroughMode() if hasattr(node, "passThroughMode") else None
        out.append([depth, node.name(), node.type(), node.blendingMode(), node.visible(), node.inheritAlpha(),
                    through])
        if node.type() == "grouplayer":
            out.extend(tree(node, depth + 1))
    return out


def ids(doc):
    return {n.uniqueId().toString() for n in [doc.rootNode(), *walk(doc.rootNode())]}


def new_roots(doc, before):
    """The nodes that came in, as [name, parent's name] of those whose parent was there before: what
    was added to the live tree (one entry: one insertion, one undo step)."""
    return [[n.name(), n.parentNode().name()] for n in walk(doc.rootNode())
            if n.uniqueId().toString() not in before
            and n.parentNode().uniqueId().toString() in before]


def png(w, h, fn, alpha=True):
    """A PNG the way the server sends one: RGBA for a foreground, RGB for the rest."""
    from PyQt5.QtGui import QImage

    from layerfusion.pixels import encode_png

    image = QImage(w, h, QImage.Format_ARGB32 if alpha else QImage.Format_RGB32)
    for y in range(h):
        for x in range(w):
            b, g, r, a = fn(x, y)
            image.setPixel(x, y, (a << 24) | (r << 16) | (g << 8) | b)
    return encode_png(image)


def grey(v):
    return lambda x, y: (v, v, v, 255)


def results(source, fg_fn=None, with_light=False):
    """Result PNGs at the window's sent size, decoded back to its size as the controller does."""
    from layerfusion.pixels import decode_triplet

    w = source.window
    images = {"blend": png(w.gen_width, w.gen_height, lambda x, y: (90, 160, 30, 255), alpha=False)}
    if source.kind == "add_foreground":
        images["foreground"] = png(w.gen_width, w.gen_height, fg_fn or disc(20, 20, 10, (0, 255, 0)))
    if source.kind == "add_background":
        images["background"] = png(w.gen_width, w.gen_height, lambda x, y: (10, 100, 250, 255), alpha=False)
    if with_light:
        for name, v in (("shadows", 128), ("light", 0), ("foreground_shadows", 255), ("foreground_light", 64)):
            images[name] = png(w.gen_width, w.gen_height, grey(v), alpha=False)
    return decode_triplet(images, w.width, w.height)


def reblend_reads(doc):
    """What Regenerate blend would send for the document's recorded group (None: there is none)."""
    from layerfusion.layers import find_group
    from layerfusion.local_blend import whole_foreground
    from layerfusion.reblend import read_source

    group = find_group(doc)
    if group is None:
        return None
    source = read_source(doc, group)
    return [whole_foreground(source), source.background, source.target.width, source.target.height]


def saved_and_reopened(app, doc, path, facts, key):
    before_tree, before_art, before_reads = tree(doc.rootNode()), artist_state(doc), reblend_reads(doc)
    doc.setBatchmode(True)
    facts[key + "_saved"] = bool(doc.saveAs(path))
    doc.close()
    again = app.openDocument(path)
    again.waitForDone()
    again.lf_artist = doc.lf_artist
    facts[key + "_reopened_same_tree"] = tree(again.rootNode()) == before_tree
    facts[key + "_reopened_same_artist"] = artist_state(again) == before_art
    facts[key + "_reopened_reblend_reads"] = [before_reads is not None, reblend_reads(again) == before_reads]
    return again


def run(cfg, facts):
    from krita import Krita, Selection

    from layerfusion.layers import find_group, member, read_records
    from layerfusion.local_blend import whole_foreground
    from layerfusion.reblend import KritaSide, blend_layers, read_source
    from layerfusion.targets import UserError

    app = Krita.instance()
    work = cfg["workdir"]

    # ---- add object, into a selection, plain ----------------------------------------------------
    doc = painted(app, "object")
    side = KritaSide(doc)
    art = artist_state(doc)
    selection = Selection()
    selection.select(40, 30, 48, 40, 255)
    doc.setSelection(selection)
    src = side.canvas_source("add_foreground", 10 ** 9, False)  # a huge budget: capped by MAX_SIDE only
    w = src.window
    facts["object_window"] = [w.x, w.y, w.width, w.height]
    facts["object_upload_is_canvas"] = src.uploads[0][1] == bytes(doc.pixelData(*w.box))
    src = side.canvas_source("add_foreground", w.width * w.height, False)  # sent as it is: exact pixels
    facts["object_sent"] = [src.window.gen_width, src.window.gen_height, list(src.window.target)]
    layers = results(src)
    side.insert_canvas(src, layers, {"seed": 3, "foreground_prompt": "a green ball"}, "job-obj")
    doc.waitForDone()
    group = find_group(doc)
    facts["object_top"] = [n.name() for n in doc.rootNode().childNodes()][-1]
    facts["object_tree"] = tree(group)
    fg = member(doc, group, "foreground")
    facts["object_fg_pixels"] = bytes(fg.pixelData(*w.box)) == layers["foreground"]
    facts["object_fg_outside_empty"] = not any(bytes(fg.pixelData(0, 0, W, H))[3::4][: W * w.y])
    record = read_records(doc)[group.uniqueId().toString()]
    facts["object_record"] = [record["kind"], record["rect"], record["generation_size"], sorted(record["layers"])]
    facts["object_artist_untouched"] = artist_state(doc) == art

    # Re-blend reads the canvas beneath the group as it is now (the artist painted after the job).
    source = read_source(doc, group)
    facts["reblend_bg_is_canvas"] = source.background == src.uploads[0][1]
    facts["reblend_fg_is_fg"] = whole_foreground(source) == layers["foreground"]
    [bg_node] = [n for n in doc.rootNode().childNodes() if n.name() == "Background"]
    paint(doc, "", lambda x, y: (7, 7, 7, 255), bg_node)
    doc.refreshProjection()
    doc.waitForDone()
    changed = read_source(doc, group).background
    facts["reblend_bg_follows_edit"] = pixel(changed, 2, 2, w.width) == [7, 7, 7, 255]
    facts["visibility_restored"] = all(n.visible() for n in walk(doc.rootNode()))
    facts["object_blend_layers"] = [n.name() for n in blend_layers(doc, group)]
    doc.setSelection(Selection())
    saved_and_reopened(app, doc, os.path.join(work, "object.kra"), facts, "object").close()

    # ---- add object, whole canvas, blend as layers -----------------------------------------------
    doc = painted(app, "object-light")
    side = KritaSide(doc)
    art = artist_state(doc)
    canvas = bytes(doc.pixelData(0, 0, W, H))
    src = side.canvas_source("add_foreground", W * H, True)
    facts["light_window"] = [src.window.x, src.window.y, src.window.width, src.window.height, src.window.target]
    layers = results(src, disc(120, 30, 10, (0, 255, 0)), with_light=True)
    side.insert_canvas(src, layers, {"seed": 4, "foreground_prompt": "ball"}, "job-light")
    doc.refreshProjection()
    doc.waitForDone()
    group = find_group(doc)
    facts["light_tree"] = tree(group)
    facts["light_group_pass_through"] = group.passThroughMode()
    shown = bytes(doc.pixelData(0, 0, W, H))
    # Outside the object: the canvas times the Shadows' 128 (Light black, the pair clipped away).
    facts["light_outside"] = [pixel(shown, 5, 100), [round(c * 128 / 255) for c in pixel(canvas, 5, 100)[:3]]]
    # On the object (0, 255, 0): the Foreground light's screen with 64 -> (64, 255, 64).
    facts["light_on_object"] = pixel(shown, 120, 30)
    facts["light_artist_untouched"] = artist_state(doc) == art
    facts["light_reblend_finds_fg"] = whole_foreground(read_source(doc, group)) == layers["foreground"]
    facts["light_blend_layers"] = [n.name() for n in blend_layers(doc, group)]
    saved_and_reopened(app, doc, os.path.join(work, "object-light.kra"), facts, "light").close()

    # ---- generate background for the cat layer ---------------------------------------------------
    doc = painted(app, "background")
    side = KritaSide(doc)
    art = artist_state(doc)
    cat = [n for n in doc.rootNode().childNodes() if n.name() == "cat"][0]
    src = side.canvas_source("add_background", W * H, True, [cat])
    facts["bg_upload_is_layer"] = src.uploads[0][1] == bytes(cat.pixelData(0, 0, W, H)) and src.uploads[0][2]
    layers = results(src, with_light=True)
    before = ids(doc)
    side.insert_canvas(src, layers, {"seed": 5, "background_prompt": "a meadow"}, "job-bg")
    doc.waitForDone()
    facts["bg_new_roots"] = new_roots(doc, before)
    facts["bg_tree"] = tree(doc.rootNode())
    group = find_group(doc)
    clone = member(doc, group, "foreground")
    facts["bg_clone_shows_cat"] = clone.projectionPixelData(0, 0, W, H) == cat.pixelData(0, 0, W, H)
    facts["bg_artist_untouched"] = artist_state(doc) == art
    # The pair is clipped to the clone: outside the cat, Background x Shadows (128) and Light (black).
    doc.refreshProjection()
    doc.waitForDone()
    shown = bytes(doc.pixelData(0, 0, W, H))
    facts["bg_outside"] = [pixel(shown, 150, 5), [round(c * 128 / 255) for c in (10, 100, 250)]]
    source = read_source(doc, group)
    facts["bg_reblend_reads"] = [whole_foreground(source) == bytes(cat.pixelData(0, 0, W, H)),
                                 source.background == layers["background"]]
    saved_and_reopened(app, doc, os.path.join(work, "background.kra"), facts, "bg").close()

    doc = painted(app, "background-plain")
    side = KritaSide(doc)
    cat = [n for n in doc.rootNode().childNodes() if n.name() == "cat"][0]
    src = side.canvas_source("add_background", W * H, False, [cat])
    side.insert_canvas(src, results(src), {"seed": 6}, "job-bg2")
    group = find_group(doc)
    facts["bg_plain_top_level"] = [n.name() for n in doc.rootNode().childNodes()]
    facts["bg_plain_tree"] = [row[1:3] for row in tree(group)]
    # The artist paints on the cat after the job: the clone shows it; moving the clone moves the object.
    paint(doc, "", disc(64, 64, 20, (0, 0, 255)), cat)
    clone = member(doc, group, "foreground")
    clone.move(16, 0)
    doc.refreshProjection()
    doc.waitForDone()
    moved = whole_foreground(read_source(doc, group))
    facts["bg_clone_follows_and_moves"] = [pixel(moved, 64 + 16, 64)[:3], pixel(moved, 50, 64)[3]]
    lowest = [n for n in doc.rootNode().childNodes()][0]
    try:
        side.canvas_source("add_background", W * H, False, [lowest])
        facts["bg_lowest_refused"] = "no error"
    except UserError as err:
        facts["bg_lowest_refused"] = str(err)
    doc.close()

    # ---- harmonize cat and cup over what lies beneath; then over a selected opaque layer ---------
    doc = painted(app, "harmonize")
    side = KritaSide(doc)
    art = artist_state(doc)
    nodes = {n.name(): n for n in doc.rootNode().childNodes()}
    canvas_below = bytes(nodes["Background"].pixelData(0, 0, W, H))
    src = side.canvas_source("harmonize", W * H, True, [nodes["cup"], nodes["cat"]])
    before = ids(doc)
    facts["harm_roles"] = [[role, alpha, name] for role, _d, alpha, name in src.uploads]
    facts["harm_bg_is_beneath"] = src.uploads[0][1] == canvas_below
    facts["harm_visibility_restored"] = all(n.visible() for n in walk(doc.rootNode()))
    side.insert_canvas(src, results(src, with_light=True), {"seed": 7}, "job-h")
    doc.waitForDone()
    facts["harm_new_roots"] = new_roots(doc, before)
    holder = [n for n in walk(doc.rootNode()) if n.name() == "Object"][0]
    facts["harm_clones_show_layers"] = [
        c.projectionPixelData(0, 0, W, H) == nodes[c.name().split(" ")[0]].pixelData(0, 0, W, H)
        for c in holder.childNodes() if c.type() == "clonelayer"]
    facts["harm_canvas_beneath"] = bytes([n for n in walk(doc.rootNode()) if n.name() == "Canvas beneath"][0]
                                         .pixelData(0, 0, W, H)) == canvas_below
    facts["harm_tree"] = tree(doc.rootNode())
    facts["harm_artist_untouched"] = artist_state(doc) == art
    saved_and_reopened(app, doc, os.path.join(work, "harmonize.kra"), facts, "harm").close()

    doc = painted(app, "harmonize-plain")
    side = KritaSide(doc)
    nodes = {n.name(): n for n in doc.rootNode().childNodes()}
    src = side.canvas_source("harmonize", W * H, False, [nodes["cat"], nodes["Background"]])
    facts["harm_opaque_roles"] = [[role, name] for role, _d, _a, name in src.uploads]
    facts["harm_opaque_bg_is_layer"] = src.uploads[0][1] == bytes(nodes["Background"].pixelData(0, 0, W, H))
    before = ids(doc)
    side.insert_canvas(src, results(src), {"seed": 8}, "job-h2")
    facts["harm_plain_new_roots"] = new_roots(doc, before)
    facts["harm_plain_top_level"] = [n.name() for n in doc.rootNode().childNodes()]
    try:
        side.insert_canvas(src, {}, {"seed": 9}, "job-broken")
        facts["harm_broken"] = "no error"
    except UserError as err:
        facts["harm_broken"] = str(err)
    facts["harm_after_broken"] = [n.name() for n in doc.rootNode().childNodes()]
    doc.close()


def __main__(args):
    report(run)
