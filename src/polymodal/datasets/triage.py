"""Support triage: tickets (text) with screenshots (PIL-drawn application windows with an error dialog) -> the team
that should take the ticket. In part of the rows (`vague`) the ticket's words say nothing about the route and only
the screenshot does (the dialog's icon, colour and message); in the rest the words name the problem and the
screenshot may show an unrelated dialog or none. Seeded: the same arguments give the same files.

    from polymodal.datasets.triage import make_triage
    make_triage("data/triage", train=2000, validation=300, test=500)   # train/validation/test.jsonl + shots/
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROUTES = ("billing", "account", "network", "crash", "display")

# what a screenshot shows for each route: dialog title, message lines, icon shape, accent colour
DIALOGS = {
    "billing": ("Payment failed", ["Your card was declined.", "Update your payment method."], "card", (40, 140, 60)),
    "account": ("Sign-in error", ["Incorrect password.", "Your account is locked."], "lock", (200, 150, 20)),
    "network": ("Connection lost", ["The server did not respond.", "Check your connection."], "wave", (30, 110, 200)),
    "crash": ("Application error", ["The program stopped working.", "Error 0xC0000005"], "cross", (200, 40, 40)),
    "display": ("Display settings", ["The display driver stopped.", "Resolution not supported."], "screen",
                (130, 60, 180)),
}

SAYS = {  # ticket phrasings that name the problem
    "billing": ["I was charged twice this month", "my invoice shows the wrong amount",
                "the payment page rejects my card", "please refund the last charge", "my subscription renewal failed"],
    "account": ["I cannot log in anymore", "the password reset email never arrives", "my account got locked",
                "two-factor code is not accepted", "I forgot my username"],
    "network": ["the app keeps losing connection", "sync never finishes, it times out", "it says I am offline",
                "uploads stall halfway", "cannot reach the server from the office"],
    "crash": ["the app crashes on start", "it closes by itself when I save", "the program freezes and quits",
              "crashes every time I open a file", "it stopped working after the update"],
    "display": ["the window is blurry on my monitor", "text is cut off on the screen", "colours look wrong",
                "the screen flickers", "the layout is broken at high resolution"],
}
VAGUE = ["got this error, see the screenshot", "this popped up and I do not know what to do",
         "help please, screenshot attached", "it does this again", "what does this mean?",
         "same problem as before, picture attached", "urgent: see attached", "this message keeps appearing"]
OPENERS = ["Hi,", "Hello team,", "", "Hey,", "Good morning,", ""]
CLOSERS = ["Thanks.", "", "Regards", "please fix", "", "Thank you!"]
APPS = ["Ledger", "Notely", "Syncbox", "PhotoDesk", "MailPro", "Planner"]


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _icon(d: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) // 2, (y0 + y1) // 2, (x1 - x0) // 2
    if kind == "cross":
        d.ellipse(box, fill=colour)
        w = max(2, r // 3)
        d.line([x0 + r // 2, y0 + r // 2, x1 - r // 2, y1 - r // 2], fill="white", width=w)
        d.line([x0 + r // 2, y1 - r // 2, x1 - r // 2, y0 + r // 2], fill="white", width=w)
    elif kind == "lock":
        d.rectangle([x0, cy, x1, y1], fill=colour)
        d.arc([x0 + r // 3, y0, x1 - r // 3, cy + r // 2], 180, 360, fill=colour, width=max(2, r // 3))
    elif kind == "card":
        d.rounded_rectangle([x0, y0 + r // 2, x1, y1 - r // 2], radius=max(1, r // 4), fill=colour)
        d.rectangle([x0, y0 + r // 2 + r // 3, x1, y0 + r // 2 + r // 2], fill=(30, 30, 30))
    elif kind == "wave":
        for k in range(3):
            d.arc([cx - r + k * r // 3, cy - r + k * r // 3, cx + r - k * r // 3, cy + r - k * r // 3], 200, 340,
                  fill=colour, width=max(2, r // 5))
        d.ellipse([cx - 3, cy + r // 2 - 3, cx + 3, cy + r // 2 + 3], fill=colour)
    else:  # screen
        d.rectangle([x0, y0 + r // 4, x1, y1 - r // 3], outline=colour, width=max(2, r // 5))
        d.rectangle([cx - r // 4, y1 - r // 3, cx + r // 4, y1], fill=colour)


def screenshot(route: str | None, rng: np.random.Generator, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """An application window with widgets and, for a route, its error dialog (None: no dialog)."""
    w, h = size
    bg = tuple(int(v) for v in rng.integers(215, 250, 3))
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, w, 22], fill=tuple(int(v) for v in rng.integers(60, 120, 3)))
    d.text((8, 4), f"{APPS[int(rng.integers(len(APPS)))]} - {int(rng.integers(1, 9))}.{int(rng.integers(10))}",
           fill="white", font=_font(int(rng.integers(11, 15))))
    for _ in range(int(rng.integers(3, 8))):  # widgets: panels, lines of text
        x, y = int(rng.integers(5, w - 60)), int(rng.integers(28, h - 20))
        shade = tuple(int(v) for v in rng.integers(150, 235, 3))
        if rng.random() < 0.5:
            d.rectangle([x, y, x + int(rng.integers(30, 120)), y + int(rng.integers(8, 40))], fill=shade)
        else:
            d.text((x, y), " ".join(["lorem", "ipsum", "dolor", "sit", "amet"][: int(rng.integers(2, 5))]),
                   fill=tuple(int(v) for v in rng.integers(40, 120, 3)), font=_font(int(rng.integers(9, 14))))
    if route is not None:
        title, lines, icon, colour = DIALOGS[route]
        dw, dh = int(rng.integers(170, 230)), int(rng.integers(90, 120))
        x0, y0 = int(rng.integers(5, w - dw - 5)), int(rng.integers(26, h - dh - 5))
        d.rectangle([x0 + 4, y0 + 4, x0 + dw + 4, y0 + dh + 4], fill=(90, 90, 90))  # shadow
        d.rectangle([x0, y0, x0 + dw, y0 + dh], fill=(250, 250, 250), outline=(80, 80, 80))
        d.rectangle([x0, y0, x0 + dw, y0 + 18], fill=colour)
        d.text((x0 + 6, y0 + 3), title, fill="white", font=_font(12))
        s = int(rng.integers(30, 42))
        _icon(d, icon, (x0 + 10, y0 + 28, x0 + 10 + s, y0 + 28 + s), colour)
        for k, line in enumerate(lines):
            d.text((x0 + 20 + s, y0 + 30 + 16 * k), line, fill=(20, 20, 20), font=_font(int(rng.integers(10, 13))))
        d.rectangle([x0 + dw - 60, y0 + dh - 26, x0 + dw - 10, y0 + dh - 8], fill=(225, 225, 225),
                    outline=(120, 120, 120))
        d.text((x0 + dw - 46, y0 + dh - 24), "OK", fill=(0, 0, 0), font=_font(11))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.2, 1.0))))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, float(rng.uniform(0, 8)), (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def ticket(route: str, vague: bool, rng: np.random.Generator) -> str:
    body = VAGUE[int(rng.integers(len(VAGUE)))] if vague else SAYS[route][int(rng.integers(len(SAYS[route])))]
    parts = [OPENERS[int(rng.integers(len(OPENERS)))], body, CLOSERS[int(rng.integers(len(CLOSERS)))]]
    return " ".join(p for p in parts if p)


def make_rows(out: Path, n: int, split: str, rng: np.random.Generator, vague: float, unrelated: float) -> list[dict]:
    shots = out / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        route = ROUTES[int(rng.integers(len(ROUTES)))]
        is_vague = bool(rng.random() < vague)
        if is_vague:
            shown: str | None = route  # only the screenshot says where it goes
        elif rng.random() < unrelated:
            shown = None if rng.random() < 0.5 else ROUTES[int(rng.integers(len(ROUTES)))]  # no or another dialog
        else:
            shown = route
        name = f"{split}_{i:05d}.png"
        screenshot(shown, rng).save(shots / name)
        rows.append({"id": f"{split}-{i}", "text": ticket(route, is_vague, rng), "screenshot": f"shots/{name}",
                     "route": route, "vague": is_vague})
    return rows


def make_triage(out: str | Path, train: int = 2000, validation: int = 300, test: int = 500, seed: int = 0,
                vague: float = 0.4, unrelated: float = 0.3) -> Path:
    """Write train/validation/test.jsonl and shots/*.png under `out`. `vague`: share of tickets whose words say
    nothing (the screenshot decides); `unrelated`: share of the other tickets whose screenshot shows no dialog or
    another route's."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for k, (split, n) in enumerate((("train", train), ("validation", validation), ("test", test))):
        rng = np.random.default_rng([seed, k])
        rows = make_rows(out, n, split, rng, vague, unrelated)
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out
