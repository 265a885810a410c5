"""Cases: an image and the volumes that must share its voxel grid (channels, label maps).

Found from file names alone, before any job (README, "Cases"):
- nnU-Net: `imagesTr/<case>_<XXXX>` are a case's channels, the lowest number (0000) its
  image; `labelsTr/<case>` beside it is its label map (also imagesTs/labelsTs);
- BIDS: in one folder, `_dseg`, `_mask`, `_probseg` and `_label-*` files whose entities
  (label- and desc- aside) are those of an anatomical image (`sub-01_ses-1_T1w`);
- the same folder: `<prefix>` with `<prefix>_seg`, `_mask`, `_label`, `_labels`;
- or the user's patterns (`cases: [img/{case}.nii.gz, seg/{case}.nii.gz]`): the first
  names the case's image, the others its members.
The first rule that claims a file decides; a member of a member takes the root image's grid.
"""

from __future__ import annotations

import re

NNUNET_FOLDERS = {"imagesTr": "labelsTr", "imagesTs": "labelsTs"}
NNUNET_CHANNEL = re.compile(r"(?P<case>.+)_(?P<channel>\d{4})")
SAME_FOLDER_SUFFIXES = ("_seg", "_mask", "_label", "_labels")
BIDS_LABEL_SUFFIXES = ("dseg", "mask")
BIDS_IMAGE_SUFFIXES = ("probseg",)
# The anatomical image whose grid a BIDS case takes, in order of preference.
BIDS_ANATOMICAL = ("T1w", "T2w", "FLAIR", "T2starw", "PDw", "PD", "T1map", "T2map", "UNIT1",
                   "angio", "inplaneT1", "inplaneT2")
# Entities that tell derivatives of one image apart, not images.
BIDS_DERIVATIVE_ENTITIES = ("label", "desc")


def _split(key: str) -> tuple[str, str]:
    folder, _, name = key.rpartition("/")
    return folder, name


def _nnunet(keys) -> dict:
    members, channels = {}, {}
    for key in keys:
        folder, name = _split(key)
        parent, _, last = folder.rpartition("/")
        match = NNUNET_CHANNEL.fullmatch(name)
        if last in NNUNET_FOLDERS and match:
            channels.setdefault((folder, match["case"]), []).append(key)
    for (folder, case), keys_of_case in channels.items():
        image, *others = sorted(keys_of_case)  # channel 0000 (the lowest) is the grid
        for key in others:
            members[key] = (image, "image", "nnU-Net channel")
        parent, _, last = folder.rpartition("/")
        label = "/".join(p for p in (parent, NNUNET_FOLDERS[last], case) if p)
        if label in keys:
            members[label] = (image, "label_map", f"nnU-Net {NNUNET_FOLDERS[last]} label map")
    return members


def _bids_parts(name: str):
    """(entities without derivative ones, suffix) of a BIDS name, or None."""
    parts = name.split("_")
    if not parts[0].startswith("sub-") or len(parts) < 2:
        return None
    entities = [p for p in parts if "-" in p]
    suffix = parts[-1] if "-" not in parts[-1] else ""
    kept = tuple(p for p in entities if p.split("-", 1)[0] not in BIDS_DERIVATIVE_ENTITIES)
    labelled = any(p.startswith("label-") for p in entities)
    return kept, suffix, labelled


def _bids(keys) -> dict:
    images, derived = {}, []
    for key in keys:
        folder, name = _split(key)
        parts = _bids_parts(name)
        if parts is None:
            continue
        entities, suffix, labelled = parts
        if suffix in BIDS_LABEL_SUFFIXES + BIDS_IMAGE_SUFFIXES or (labelled and not suffix):
            derived.append((key, folder, entities, suffix))
        elif suffix in BIDS_ANATOMICAL:
            images.setdefault((folder, entities), []).append((BIDS_ANATOMICAL.index(suffix), key))
    members = {}
    for key, folder, entities, suffix in derived:
        candidates = images.get((folder, entities))
        if candidates:
            image = min(candidates)[1]
            role = "image" if suffix in BIDS_IMAGE_SUFFIXES else "label_map"
            members[key] = (image, role, f"BIDS _{suffix or 'label-'} of its anatomical image")
    return members


def _same_folder(keys) -> dict:
    members = {}
    for key in keys:
        for suffix in SAME_FOLDER_SUFFIXES:
            if key.endswith(suffix) and key[: -len(suffix)] in keys:
                members[key] = (key[: -len(suffix)], "label_map", f"{suffix} beside its image")
                break
    return members


def _pattern_regex(pattern: str) -> re.Pattern:
    """A pattern relative to nii_folder as a regex of the key (the path without suffix)."""
    for suffix in (".nii.gz", ".nii"):
        if pattern.endswith(suffix):
            pattern = pattern[: -len(suffix)]
            break
    text = re.escape(pattern).replace(r"\{case\}", "(?P<case>[^/]+?)").replace(r"\*", "[^/]*")
    return re.compile(text)


def _declared(keys, patterns) -> dict:
    image_pattern, *member_patterns = [_pattern_regex(p) for p in patterns]
    images = {}
    for key in keys:
        match = image_pattern.fullmatch(key)
        if match:
            images.setdefault(match["case"], key)
    members = {}
    for key in keys:
        if key in images.values():
            continue
        for pattern in member_patterns:
            match = pattern.fullmatch(key)
            if match and match["case"] in images:
                members[key] = (images[match["case"]], "auto", "matches cases patterns")
                break
    return members


def find_cases(keys, setting="auto") -> dict[str, tuple[str, str, str]]:
    """{member key: (its case image's key, role, why)} for the volume keys of one dataset
    (relative paths without suffix). role: "label_map" (a label map by its layout), "image"
    (a channel, a probability map) or "auto" (the usual detection decides)."""
    keys = set(keys)
    if setting == "off":
        return {}
    if setting == "auto":
        found = {}
        for rule in (_nnunet, _bids, _same_folder):
            for key, member in rule(keys).items():
                found.setdefault(key, member)
    else:
        found = _declared(keys, setting)
    # A member's image that is itself a member: the root image's grid (no cycles: roots only).
    resolved = {}
    for key, (image, role, why) in found.items():
        seen = {key}
        while image in found and image not in seen:
            seen.add(image)
            image = found[image][0]
        if image not in seen:
            resolved[key] = (image, role, why)
    return resolved
