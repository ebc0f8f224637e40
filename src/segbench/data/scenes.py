"""Drawing one synthetic street scene and its label map (what :mod:`segbench.data.synthetic` writes)."""

import cv2
import numpy as np

SKY, BUILDING, ROAD, SIDEWALK, LANE, VEGETATION, CAR, PERSON = range(8)
VOID = 255


def render_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Renders one scene: RGB ``(h, w, 3)`` uint8 and its label map ``(h, w)`` uint8.

    Layers are painted back to front (sky, buildings, vegetation, ground and road,
    lane markings, objects), then the lighting; each draws from ``rng`` in turn,
    so a seed always gives the same scene.
    """
    img = np.zeros((h, w, 3), np.float32)
    mask = np.zeros((h, w), np.uint8)
    horizon = int(h * rng.uniform(0.3, 0.5))
    vx = w * rng.uniform(0.3, 0.7)  # vanishing point x
    _sky(rng, img, mask)
    _buildings(rng, img, mask, horizon)
    _vegetation(rng, img, mask, horizon)
    road, road_mask = _ground(rng, img, mask, horizon, vx)
    _lane_markings(rng, img, mask, road, road_mask, horizon, vx)
    _objects(rng, img, mask, horizon)
    return _lighting(rng, img, horizon), mask


def _sky(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray) -> None:
    """Vertical gradient between two random tints, soft clouds."""
    h, w = mask.shape
    top, bottom = _colour(rng, (0.35, 0.95)), _colour(rng, (0.4, 1.0))
    t = np.linspace(0, 1, h)[:, None, None]
    img[:] = top * (1 - t) + bottom * t
    img += _blurred_noise(rng, h, w, 9) * 40
    mask[:] = SKY


def _buildings(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, horizon: int) -> None:
    """A skyline of boxes from the horizon up, window grids as texture."""
    w = mask.shape[1]
    x = -int(rng.integers(0, w // 8))
    while x < w:
        bw = int(rng.integers(w // 8, w // 3))
        top_y = int(rng.integers(2, max(3, horizon - 4)))
        base = _grey_or_tint(rng)
        block = np.s_[top_y : horizon + 2, max(x, 0) : x + bw]
        img[block] = base
        mask[block] = BUILDING
        win = int(rng.integers(3, 7))
        dark = base * rng.uniform(0.3, 0.6)
        for wy in range(top_y + 2, horizon - 1, win + 2):
            for wx in range(max(x, 0) + 2, min(x + bw, w) - 2, win + 2):
                img[wy : wy + win // 2 + 1, wx : wx + win // 2 + 1] = dark
        x += bw + int(rng.integers(0, w // 10))


def _vegetation(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, horizon: int) -> None:
    """Clusters of blobs in front of the buildings, high-frequency texture."""
    h, w = mask.shape
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = int(rng.integers(0, w)), horizon - int(rng.integers(0, h // 6))
        blob = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(3, 7))):
            center = (
                cx + int(rng.integers(-w // 10, w // 10)),
                cy + int(rng.integers(-h // 12, h // 12)),
            )
            axes = (
                int(rng.integers(w // 30 + 2, w // 10 + 3)),
                int(rng.integers(h // 30 + 2, h // 8 + 3)),
            )
            cv2.ellipse(blob, center, axes, 0, 0, 360, 1, -1)
        leaf = np.array([rng.uniform(20, 90), rng.uniform(80, 170), rng.uniform(10, 80)])
        tex = leaf * (0.6 + 0.8 * rng.random((h, w, 1)))
        img[blob > 0] = tex[blob > 0]
        mask[blob > 0] = VEGETATION


def _ground(
    rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, horizon: int, vx: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sidewalks left and right, a road converging to the vanishing point; returns the road."""
    h, w = mask.shape
    ground = np.s_[horizon:, :]
    side = _grey_or_tint(rng)
    img[ground] = side
    tiles = ((np.indices((h, w)) // int(rng.integers(3, 7))).sum(0) % 2)[..., None]
    img[ground] *= 0.85 + 0.15 * tiles[ground]
    mask[ground] = SIDEWALK
    road_half = w * rng.uniform(0.3, 0.6)
    road = np.array(
        [
            [vx - 2, horizon],
            [vx + 2, horizon],
            [w / 2 + road_half + rng.uniform(-w / 6, w / 6), h],
            [w / 2 - road_half + rng.uniform(-w / 6, w / 6), h],
        ],
        np.int32,
    )
    road_mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(road_mask, [road], 1)
    asphalt = _grey_or_tint(rng) * 0.8
    tex = asphalt * (0.9 + 0.2 * rng.random((h, w, 1)))
    img[road_mask > 0] = tex[road_mask > 0]
    mask[road_mask > 0] = ROAD
    return road, road_mask


def _lane_markings(
    rng: np.random.Generator,
    img: np.ndarray,
    mask: np.ndarray,
    road: np.ndarray,
    road_mask: np.ndarray,
    horizon: int,
    vx: float,
) -> None:
    """Dashed lines from the vanishing point, white or yellow, on the road only."""
    h, w = mask.shape
    paint = np.array([240, 240, 235]) if rng.random() < 0.7 else np.array([230, 200, 40])
    for frac in rng.choice([0.33, 0.5, 0.66], size=int(rng.integers(1, 3)), replace=False):
        bx = road[3, 0] + frac * (road[2, 0] - road[3, 0])
        n_dash = int(rng.integers(4, 8))
        for k in range(n_dash):
            s0, s1 = (k + 0.2) / n_dash, (k + 0.7) / n_dash
            p0 = (int(vx + (bx - vx) * s0**1.5), int(horizon + (h - horizon) * s0**1.5))
            p1 = (int(vx + (bx - vx) * s1**1.5), int(horizon + (h - horizon) * s1**1.5))
            line = np.zeros((h, w), np.uint8)
            cv2.line(line, p0, p1, 1, max(1, int(1 + 3 * s1)))
            line &= road_mask
            img[line > 0] = paint
            mask[line > 0] = LANE


def _objects(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, horizon: int) -> None:
    """Cars, people and poles back to front, so nearer ones occlude farther ones."""
    h, w = mask.shape
    objects = [(CAR, rng.uniform(0.1, 1.0)) for _ in range(int(rng.integers(1, 5)))]
    objects += [(PERSON, rng.uniform(0.1, 1.0)) for _ in range(int(rng.integers(0, 4)))]
    objects += [(VOID, rng.uniform(0.1, 1.0)) for _ in range(int(rng.integers(0, 3)))]
    for kind, depth in sorted(objects, key=lambda o: o[1]):
        y = int(horizon + (h - horizon) * depth)
        scale = 0.15 + 0.85 * depth
        if kind == CAR:
            _car(rng, img, mask, y, scale, w, h)
        elif kind == PERSON:
            _person(rng, img, mask, y, scale, w, h)
        else:
            _pole(rng, img, mask, y, scale, w)


def _lighting(rng: np.random.Generator, img: np.ndarray, horizon: int) -> np.ndarray:
    """A shadow band, global gain/gamma, sensor noise, slight blur; returns uint8 RGB."""
    h, w = img.shape[:2]
    if rng.random() < 0.5:
        shadow = np.zeros((h, w), np.uint8)
        x0 = int(rng.integers(0, w))
        corners = [[x0, h], [x0 + w // 3, h], [x0 + w // 2, horizon], [x0 + w // 4, horizon]]
        cv2.fillPoly(shadow, [np.array(corners, np.int32)], 1)
        img[shadow > 0] *= rng.uniform(0.4, 0.7)
    img = 255 * (np.clip(img * rng.uniform(0.6, 1.3), 0, 255) / 255) ** rng.uniform(0.7, 1.4)
    img += rng.normal(0, rng.uniform(3, 12), img.shape)
    return cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), rng.uniform(0.1, 0.8))


def _colour(rng: np.random.Generator, value: tuple[float, float]) -> np.ndarray:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(0, 120), 255 * rng.uniform(*value)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _grey_or_tint(rng: np.random.Generator) -> np.ndarray:
    """Greys and muted tints: buildings, roads and sidewalks share this range on purpose."""
    grey = rng.uniform(60, 200)
    return np.clip(grey + rng.normal(0, 18, 3), 0, 255).astype(np.float32)


def _blurred_noise(rng: np.random.Generator, h: int, w: int, k: int) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), k)
    return ((noise - noise.mean()) / (noise.std() + 1e-6))[..., None].astype(np.float32)


def _car(rng, img, mask, y, scale, w, h) -> None:
    cw, ch = int(w * 0.35 * scale) + 4, int(h * 0.16 * scale) + 3
    x = int(rng.integers(-cw // 3, w - cw // 2))
    body = rng.uniform(0, 255, 3)
    y0 = y - ch
    shape = np.zeros((h, w), np.uint8)
    cv2.rectangle(shape, (x, y0 + ch // 3), (x + cw, y), 1, -1)
    cv2.rectangle(shape, (x + cw // 5, y0), (x + 4 * cw // 5, y0 + ch // 3), 1, -1)
    img[shape > 0] = body
    img[max(y0, 0) : max(y0 + ch // 3, 0), max(x + cw // 4, 0) : max(x + 3 * cw // 4, 0)] = (
        body * 0.3
    )
    for wx in (x + cw // 5, x + 4 * cw // 5):
        cv2.circle(shape, (wx, y), max(1, ch // 4), 1, -1)
        cv2.circle(img, (wx, y), max(1, ch // 4), (20, 20, 20), -1)
    mask[shape > 0] = CAR


def _person(rng, img, mask, y, scale, w, h) -> None:
    ph = int(h * 0.35 * scale) + 5
    pw = max(2, ph // 4)
    x = int(rng.integers(0, w))
    shape = np.zeros((h, w), np.uint8)
    cv2.ellipse(shape, (x, y - ph // 2), (pw // 2 + 1, ph // 3 + 1), 0, 0, 360, 1, -1)
    cv2.rectangle(shape, (x - pw // 4, y - ph // 4), (x + pw // 4, y), 1, -1)
    cv2.circle(shape, (x, y - ph + ph // 8), max(1, ph // 8), 1, -1)
    cloth = rng.uniform(0, 255, 3)
    tex = cloth * (0.8 + 0.4 * rng.random((h, w, 1)))
    img[shape > 0] = tex[shape > 0]
    cv2.circle(img, (x, y - ph + ph // 8), max(1, ph // 8), (200, 160, 130), -1)
    mask[shape > 0] = PERSON


def _pole(rng, img, mask, y, scale, w) -> None:
    x = int(rng.integers(0, w))
    thick = max(1, int(3 * scale))
    top = max(0, y - int(rng.uniform(0.5, 0.9) * y))
    img[top:y, x : x + thick] = rng.uniform(40, 160)
    mask[top:y, x : x + thick] = VOID
