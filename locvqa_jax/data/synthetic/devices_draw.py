"""Support devices on a frontal image: endotracheal tube, enteric tube, central line, pacemaker.

Positions follow the drawn anatomy (the endotracheal tube ends above the carina, the enteric tube
passes the left hemidiaphragm into the stomach, a central line ends at the cavoatrial junction,
pacemaker leads reach the right atrium and ventricle). Devices carry no boxes: they are reported
but never asked about.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from locvqa_jax.data.synthetic.anatomy import SIDE_SIGN
from locvqa_jax.data.synthetic.canvas import Canvas
from locvqa_jax.data.synthetic.raster import bezier
from locvqa_jax.data.synthetic.truth import DRAWABLE_DEVICES, Device


def _et_tube(c: Canvas, device: Device) -> None:
  t = c.thorax
  cu, cv = t.carina
  tip = cv - 0.22
  path = t.trachea[t.trachea[:, 1] < tip]
  path = np.concatenate([[(path[0, 0], -1.6)], path, [(cu, tip)]])
  k = c.knobs.device_contrast
  c.sharp += 0.1 * k * c.line(path, 0.045, soft=0.004)
  # The radio-opaque stripe along the tube wall.
  c.sharp += 0.35 * k * c.line(path + (0.012, 0), 0.008)


def _enteric_tube(c: Canvas, device: Device) -> None:
  t = c.thorax
  mid = t.midline
  dome_u, dome_v = t.dome["left"]
  gastric = (mid + 0.42, dome_v + 0.28)
  upper = bezier((mid + 0.02, -1.6), (mid + 0.0, 0.4), (mid + 0.06, dome_v + 0.05), 30)
  lower = bezier((mid + 0.06, dome_v + 0.05), (mid + 0.15, dome_v + 0.35), gastric, 16)
  path = np.concatenate([upper, lower[1:]])
  k = c.knobs.device_contrast
  c.sharp += 0.4 * k * c.line(path, 0.014, soft=0.003)
  c.sharp += 0.5 * k * c.ellipse(gastric, 0.02, 0.02, edge=0.4, factor=1)


def _central_line(c: Canvas, device: Device) -> None:
  t = c.thorax
  side = device.side or "right"
  sign = SIDE_SIGN[side]
  hr, _, htop, _ = t.heart_extent
  entry = (sign * 0.9, -0.05)
  svc = (t.midline - 0.09, 0.35)
  tip = (t.midline - 0.1, htop + 0.05)
  path = np.concatenate([bezier(entry, (sign * 0.35, 0.15), svc, 24),
                         bezier(svc, (t.midline - 0.1, 0.6), tip, 12)[1:]])
  c.sharp += 0.35 * c.knobs.device_contrast * c.line(path, 0.012, soft=0.003)


def _pacemaker(c: Canvas, device: Device) -> None:
  t = c.thorax
  side = device.side or "left"
  sign = SIDE_SIGN[side]
  box_c = (sign * 0.68, 0.2)
  k = c.knobs.device_contrast
  box = np.array([(box_c[0] - 0.1, box_c[1] - 0.07), (box_c[0] + 0.1, box_c[1] - 0.07),
                  (box_c[0] + 0.1, box_c[1] + 0.07), (box_c[0] - 0.1, box_c[1] + 0.07)])
  c.sharp += 1.2 * k * c.poly(box, soft=0.008)
  _, hl, htop, hbot = t.heart_extent
  atrium = (t.midline - 0.12, htop + 0.2)
  ventricle = (t.midline + 0.45 * (hl - t.midline), hbot - 0.1)
  svc = (t.midline - 0.08, htop - 0.1)
  for tip, bend in ((atrium, (t.midline - 0.2, htop + 0.1)), (ventricle, (t.midline, hbot))):
    path = np.concatenate([bezier(box_c, (sign * 0.3, 0.05), svc, 20),
                           bezier(svc, bend, tip, 16)[1:]])
    c.sharp += 0.45 * k * c.line(path, 0.01, soft=0.003)


_DRAW = {"endotracheal tube": _et_tube, "enteric tube": _enteric_tube,
         "central line": _central_line, "pacemaker": _pacemaker}
if set(_DRAW) != set(DRAWABLE_DEVICES):
  raise ImportError(f"devices_draw: drawers {sorted(_DRAW)} do not match "
                    "truth.DRAWABLE_DEVICES")


def check(devices: Sequence[Device]) -> None:
  """Fails loudly on a device the renderer cannot draw."""
  for device in devices:
    if device.name not in _DRAW:
      raise ValueError(f"render: device name {device.name!r} is not drawable; expected one of "
                       f"{DRAWABLE_DEVICES}")
    if device.side not in (None, "left", "right"):
      raise ValueError(f"Device {device.name!r}: side must be 'left', 'right' or None, got "
                       f"{device.side!r}")


def draw(c: Canvas, devices: Sequence[Device]) -> None:
  """Adds every device to ``c``."""
  check(devices)
  for device in devices:
    _DRAW[device.name](c, device)
