"""A tiny hand-made raw set (3 patients) in the PhysioNet layouts, with the real quirks.

`write(root, layout)` writes it under `root` and returns it; layout `flat` is the synthetic
generator's layout, `release` uses version folders, plain `.csv`, reports without `files/` and a
zipped scene graph folder, `nested` has `scene_graph/scene_graph/`.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zipfile

import numpy as np
from PIL import Image

S1, S2, S3, S4, S5 = "50000001", "50000002", "50000003", "50000004", "50000005"
P1, P2, P3 = "10000001", "11000002", "12000003"


def dicom(i: int) -> str:
  return "-".join(f"{i:02x}{g:06x}" for g in range(5))


A, B, C, D, E, F = (dicom(i) for i in range(1, 7))
# dicom -> (subject, study, view, height, width, mimic split)
IMAGES = {
    A: (P1, S1, "PA", 60, 50, "train"), B: (P1, S1, "LATERAL", 60, 50, "train"),
    C: (P1, S2, "", 40, 64, "train"), D: (P2, S3, "PA", 48, 48, "validate"),
    E: (P3, S4, "AP", 48, 48, "test"), F: (P3, S5, "PA", 48, 48, "test"),
}
STUDY_TIME = {S1: "80556.875", S2: "213014.531", S3: "120000.0", S4: "90000.5", S5: "100000.0"}

REPORTS = {
    S1: ("                                 FINAL REPORT\n"
         " EXAMINATION:  CHEST (PA AND LAT)\n \n"
         " INDICATION:  ___ with cough.\n \n"
         " FINDINGS: \n \n"
         " The lungs are clear.  There is a small right pleural effusion which is\n"
         " unchanged.\n \n"
         " IMPRESSION: \n \n"
         " Small right pleural effusion.\n"),
    S2: ("                                 FINAL ADDENDUM\n"
         " ADDENDUM:  Findings discussed with Dr. ___.\n"
         " ______________________________________________________________________________\n"
         "                                 FINAL REPORT\n"
         " INDICATION:  Follow-up.\n \n"
         " FINDINGS: \n \n"
         " IMPRESSON: \n \n"
         " No acute cardiopulmonary process.\n"),
    S3: ("                                 FINAL REPORT\n"
         " CHEST RADIOGRAPH PERFORMED ON ___\n \n"
         " Heart size is normal.  The lungs are clear.\n \n"
         " No pneumothorax.  No effusion.\n"),
    S4: ("                                 FINAL REPORT\r\n"
         " COMPARISON:  None.\r\n \r\n"
         " CONCLUSION: \r\n"
         " Mild pulmonary edema.\r\n"),
    S5: ("                                 FINAL REPORT\n"
         " FINDNGS:  Left lower lobe\n opacity.\n"),
}


def _jpg(h: int, w: int) -> bytes:
  y, x = np.mgrid[0:h, 0:w]
  array = ((x * 3 + y * 2) % 256).astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(array, mode="L").save(buf, format="JPEG", quality=95)
  return buf.getvalue()


def _write(path: str, text: str, gz: bool = False, newline: str = "\n") -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  data = text.replace("\n", newline).encode("utf-8")
  if gz:
    data = gzip.compress(data)
  with open(path, "wb") as f:
    f.write(data)


def scene_graph(dicom_id: str) -> dict:
  _, study, view, h, w, _ = IMAGES[dicom_id]
  longest = max(h, w)

  def obj(name, box, original=True):
    x1, y1, x2, y2 = box
    r, ox, oy = 224 / longest, (224 - w * 224 / longest) / 2, (224 - h * 224 / longest) / 2
    d = {"object_id": f"{dicom_id}_{name}", "bbox_name": name, "synsets": ["C0"], "name": name,
         "x1": round(x1 * r + ox), "y1": round(y1 * r + oy), "x2": round(x2 * r + ox),
         "y2": round(y2 * r + oy), "width": 1, "height": 1}
    if original:
      d.update(original_x1=x1, original_y1=y1, original_x2=x2, original_y2=y2,
               original_width=x2 - x1, original_height=y2 - y1)
    return d

  objects = [obj("right lung", (5, 10, 25, h - 10)), obj("left lung", (w - 20, 5, w + 30, h - 5)),
             obj("trachea", (w + 5, 0, w + 40, 10)), obj("spine", (w // 2 - 2, 0, w // 2 + 2, h),
                                                          original=False)]
  phrase = "Small right\n   pleural effusion."
  attributes = [
      {"right lung": True, "bbox_name": "right lung", "synsets": ["C0"], "name": "Right lung",
       "attributes": [["anatomicalfinding|yes|pleural effusion", "nlp|yes|abnormal"],
                      ["nlp|yes|normal"]],
       "phrases": [phrase, "The lungs are clear."], "phrase_IDs": [f"{study}|5", f"{study}|2"],
       "sections": ["finalreport", "finalreport"]},
      {"bbox_name": "left lung", "attributes": [["anatomicalfinding|yes|pleural effusion"]],
       "phrases": [phrase]},
      {"bbox_name": "right chest wall", "attributes": [["nlp|yes|normal"]],
       "phrases": ["Chest wall unremarkable."]},
      {"bbox_name": "trachea", "phrases": ["Trachea midline."]},
  ]
  return {"image_id": dicom_id, "viewpoint": view, "patient_id": int(IMAGES[dicom_id][0]),
          "study_id": int(study), "objects": objects, "attributes": attributes,
          "relationships": []}


GRAPHS = (A, C, D, F)


def write(root: str, layout: str = "flat") -> str:
  release = layout == "release"
  jpg = os.path.join(root, "mimic-cxr-jpg", "2.1.0" if release else "")
  ext = ".csv" if release else ".csv.gz"
  for d, (p, s, *_, h, w, _) in ((d, v) for d, v in IMAGES.items()):
    path = os.path.join(jpg, "files", f"p{p[:2]}", f"p{p}", f"s{s}", f"{d}.jpg")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(_jpg(h, w))
  meta = ["\ufeffdicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,"
          "Rows,Columns,StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,"
          "ViewCodeSequence_CodeMeaning,PatientOrientationCodeSequence_CodeMeaning"]
  for d, (p, s, view, h, w, _) in IMAGES.items():
    meta.append(f'{d},{p},{s},"CHEST (PA, LAT)",{view},{h},{w},21800506,{STUDY_TIME[s]},'
                f'"CHEST (PA, LAT)",postero-anterior,Erect')
  _write(os.path.join(jpg, "mimic-cxr-2.0.0-metadata" + ext), "\n".join(meta) + "\n",
         gz=not release, newline="\r\n")
  split = ["dicom_id,study_id,subject_id,split"]
  split += [f"{d},{s},{p},{sp}" for d, (p, s, *_, sp) in IMAGES.items()]
  _write(os.path.join(jpg, "mimic-cxr-2.0.0-split" + ext), "\n".join(split) + "\n",
         gz=not release)
  labels = ("Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,"
            "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,"
            "Pneumothorax,Support Devices")
  chex = [f"subject_id,study_id,{labels}",
          f"{P1},{S1},,,,,,,,,,1.0,,,0.0,",
          f"{P1},{S2},,,,,,,,,1.0,,,,,",
          f"{P2},{S3},,,,,,,,,,,,,,",
          f"{P3},{S4},-1.0,,,1.0,,,,,,,,,,1.0"]  # S5 missing on purpose
  _write(os.path.join(jpg, "mimic-cxr-2.0.0-chexpert" + ext), "\n".join(chex) + "\n",
         gz=not release)
  reports = os.path.join(root, "mimic-cxr-reports", "" if release else "files")
  for s, text in REPORTS.items():
    p = next(p for p, s2, *_ in IMAGES.values() if s2 == s)
    _write(os.path.join(reports, f"p{p[:2]}", f"p{p}", f"s{s}.txt"), text)

  cig = os.path.join(root, "chest-imagenome-dataset-1.0.0" if release else "chest-imagenome",
                     "silver_dataset")
  graphs = {f"{d}_SceneGraph.json": json.dumps(scene_graph(d)) for d in GRAPHS}
  if release:
    os.makedirs(cig, exist_ok=True)
    with zipfile.ZipFile(os.path.join(cig, "scene_graph.zip"), "w") as zf:
      for name, text in graphs.items():
        zf.writestr(f"scene_graph/{name}", text)
  else:
    folder = os.path.join(cig, "scene_graph", *(["scene_graph"] if layout == "nested" else []))
    for name, text in graphs.items():
      _write(os.path.join(folder, name), text)
  head = ",subject_id,study_id,dicom_id,path,ViewPosition"
  rows = {"train": [A, C, B], "valid": [D], "test": [E, F]}
  for name, dicoms in rows.items():
    lines = [head] + [f"{i},{IMAGES[d][0]},{IMAGES[d][1]},{d},files/p{IMAGES[d][0][:2]}/"
                      f"p{IMAGES[d][0]}/s{IMAGES[d][1]}/{d}.dcm,{IMAGES[d][2]}"
                      for i, d in enumerate(dicoms)]
    _write(os.path.join(cig, "splits", f"{name}.csv"), "\n".join(lines) + "\n")
  _write(os.path.join(cig, "splits", "images_to_avoid.csv"),
         head[1:] + f"\n{P3},{S4},{E},files/p12/p{P3}/s{S4}/{E}.dcm,AP\n")

  vqa = os.path.join(root, "medical-diff-vqa", "1.0.1" if release else "")
  rows = [
      "study_id,subject_id,ref_id,question_type,question,answer,split",
      f"{S2},{P1},{S1},abnormality,what abnormalities are seen in this image?,"
      f'"pleural effusion, atelectasis",train',
      f"{S2},{P1},{S1},view,which view is this image taken?,PA view,train",
      f"{S2},{P1},{S1},difference,what has changed compared to the reference image?,"
      "the main image is missing the finding of pleural effusion than the reference image. ,train",
      f"{S5},{P3},{S4},presence,is there edema?,no,test",
      f"{S5},{P3},{S4},difference,what has changed compared to the reference image?,"
      "nothing has changed.,test",
      f"{S2},{P1},{S1},view,is this AP view?,no,val",
  ]
  _write(os.path.join(vqa, "mimic_pair_questions" + (".csv")), "\n".join(rows) + "\n",
         newline="\r\n")
  all_rows = [f"subject_id,study_id,{labels},dicom_id,view,split,study_date,study_order"]
  for s, d in ((S1, A), (S2, C), (S3, D), (S4, E), (S5, F)):
    p = IMAGES[d][0]
    all_rows.append(f"{p},{s},,,,,,,,,,,,,,,{d},postero-anterior,{IMAGES[d][5]},21800506,1.0")
  _write(os.path.join(vqa, "mimic_all" + ext), "\n".join(all_rows) + "\n", gz=not release)
  return root


def build(manual_dir: str, data_dir: str, name: str, config: str = "r128", **kwargs):
  """Builds one dataset with the CLI's function; returns the builder."""
  from tfds_builders import build as build_lib  # pylint: disable=import-outside-toplevel
  kwargs.setdefault("workers", 1)
  return build_lib.build(name, manual_dir=manual_dir, data_dir=data_dir, config=config, **kwargs)


def read_all(builder, split: str) -> list[dict]:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  source = tfds.data_source(builder.info.full_name.rsplit("/", 1)[0],
                            data_dir=builder.data_dir_root, split=split)
  return [source[i] for i in range(len(source))]
