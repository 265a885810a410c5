"""Label maps that look like real ones, for the label-volume tests and docs/benchmarks.md:
a 7-class head (thin scalp, skull, CSF and cortex layers, small nuclei) and an atlas of
many parcels (warped Voronoi cells of random seeds, some thin sheet-like parcels)."""

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.spatial import cKDTree


def smooth_noise(shape, sigma, seed):
    """Zero-mean, unit-amplitude smooth random field."""
    field = gaussian_filter(np.random.default_rng(seed).normal(size=shape), sigma)
    return field / np.abs(field).max()


def head_phantom(shape=(128, 128, 62), seed=0):
    """uint8, 7 classes: 0 background, 1 scalp, 2 skull, 3 CSF, 4 grey matter (a folded
    ribbon about 2 voxels thick), 5 white matter, 6 deep nuclei and ventricles (small)."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    x, y, z = grids
    radius = np.sqrt((x / 0.9) ** 2 + (y / 0.95) ** 2 + (z / 0.9) ** 2)
    folds = 0.06 * smooth_noise(shape, 3, seed)
    labels = np.zeros(shape, np.uint8)
    labels[radius < 1.0] = 1
    labels[radius < 0.95] = 2
    labels[radius < 0.90] = 3
    labels[radius + folds < 0.87] = 4
    labels[radius + folds < 0.84] = 5
    nuclei = [((0.2, 0.1, 0.0), 0.12), ((-0.2, 0.1, 0.0), 0.12), ((0.0, -0.2, 0.1), 0.08),
              ((0.35, -0.3, -0.2), 0.06), ((-0.35, -0.3, -0.2), 0.06)]
    for centre, size in nuclei:
        inside = sum(((g - c) / size) ** 2 for g, c in zip(grids, centre)) < 1
        labels[inside] = 6
    return labels


def atlas_phantom(shape=(181, 217, 181), n_labels=117, seed=0, thin=6):
    """int16 atlas: background 0 outside a brain-shaped ellipsoid, `n_labels - 1 - thin`
    parcels from Voronoi cells of random seeds on warped coordinates (wiggly borders, sizes
    from small to large), and `thin` sheet-like parcels 2-3 voxels thick."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    coarse = tuple(max(4, n // 6) for n in shape)
    warp = [smooth_noise(coarse, 1.5, seed + axis) * 0.08 for axis in range(3)]
    scale = [(c - 1) / 2 for c in coarse]
    index = [(g + 1) * s for g, s in zip(grids, scale)]
    warped = [g + map_coordinates(w, index, order=1) for g, w in zip(grids, warp)]
    brain = (grids[0] / 0.85) ** 2 + (grids[1] / 0.9) ** 2 + (grids[2] / 0.8) ** 2 < 1
    parcels = n_labels - 1 - thin
    seeds = rng.uniform(-0.8, 0.8, (parcels, 3))
    # Seeds bunched towards the centre make small parcels there and large ones outside.
    seeds *= rng.uniform(0.3, 1.0, (parcels, 1))
    points = np.stack([w[brain] for w in warped], axis=1)
    _, nearest = cKDTree(seeds).query(points, workers=-1)
    labels = np.zeros(shape, np.int16)
    labels[brain] = nearest + 1
    for sheet in range(thin):
        normal = rng.normal(size=3)
        normal /= np.linalg.norm(normal)
        distance = sum(n * (w - c) for n, w, c in
                       zip(normal, warped, rng.uniform(-0.3, 0.3, 3)))
        thickness = (2.0 + sheet % 2) / max(shape) * 2  # 2 or 3 voxels
        near_centre = sum(g ** 2 for g in grids) < 0.35
        labels[(np.abs(distance) < thickness / 2) & brain & near_centre] = parcels + 1 + sheet
    return labels


def label_surfaces(labels):
    """{label: faces between it and a differently-labelled 6-neighbour} (the image's
    outer faces not counted) and the total number of such faces."""
    faces = {}
    total = 0
    for axis in range(3):
        low = np.moveaxis(labels, axis, 0)[:-1]
        high = np.moveaxis(labels, axis, 0)[1:]
        differ = low != high
        total += int(np.count_nonzero(differ))
        for side in (low[differ], high[differ]):
            values, counts = np.unique(side, return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist()):
                faces[value] = faces.get(value, 0) + count
    return faces, total
