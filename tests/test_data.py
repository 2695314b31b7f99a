"""Image and video datasets: discovery, screening, splits, transforms, caching, sampling."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from colour_images import smooth_colour_image, write_drifting_video, write_image_folder
from sacolor.training.data.dataset import ColorizationDataset, PairTransform
from sacolor.training.data.frame_cache import cached_frames
from sacolor.colour import normalized_lab_to_rgb
from sacolor.training.data.sampler import ResumableSampler
from sacolor.training.data.screening import scan_images
from sacolor.training.data.splits import collect_splits, split_by_time, split_fraction
from sacolor.io.paths import find_images


def test_find_and_screen_images(tmp_path):
    colour = write_image_folder(tmp_path, 5)
    Image.fromarray(np.full((20, 20), 90, np.uint8)).save(tmp_path / "gray_mode.png")
    gray_rgb = np.repeat(smooth_colour_image(1)[..., :1], 3, axis=-1)
    Image.fromarray(gray_rgb).save(tmp_path / "nested" / "gray_rgb.jpg")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    found = find_images(tmp_path)
    assert {p.suffix for p in found} == {".png", ".jpg", ".bmp", ".webp", ".tiff"}
    assert len(found) == 8
    scan = scan_images(found)
    assert sorted(scan.colour) == sorted(colour)
    assert sorted(p.name for p in scan.gray) == ["gray_mode.png", "gray_rgb.jpg"]
    assert [p.name for p, _ in scan.unreadable] == ["broken.png"]


@pytest.mark.filterwarnings("ignore:--data")
def test_collect_splits_reports_once_and_holds_out_deterministically(tmp_path):
    write_image_folder(tmp_path, 20)
    Image.fromarray(np.full((20, 20), 90, np.uint8)).save(tmp_path / "gray.png")
    (tmp_path / "broken.jpg").write_bytes(b"junk")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, test = collect_splits([tmp_path], val_fraction=0.1)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert any("skipped 1 grayscale" in m for m in messages) and any("skipped 1 unreadable" in m for m in messages)
    assert len(test) == 2 and len(train) == 18 and not set(train) & set(test)
    assert collect_splits([tmp_path], val_fraction=0.1) == (train, test)
    assert len(split_fraction(train[:3], 0.01)[1]) == 1  # at least one held out


def test_train_and_test_subfolders_are_the_split(tmp_path):
    write_image_folder(tmp_path / "train", 3)
    write_image_folder(tmp_path / "test", 2)
    train, test = collect_splits([tmp_path])
    assert all("train" in p.parts for p in train) and len(train) == 3
    assert all("test" in p.parts for p in test) and len(test) == 2


@pytest.mark.filterwarnings("ignore:--data")
def test_clear_errors_for_empty_or_missing_data(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no images"):
        collect_splits([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_splits([tmp_path / "missing"])
    Image.fromarray(np.full((20, 20), 90, np.uint8)).save(tmp_path / "empty" / "gray.png")
    with pytest.raises(ValueError, match="0 usable colour image"):
        collect_splits([tmp_path / "empty"])
    with pytest.raises(ValueError, match="--data is required"):
        collect_splits([])


def test_transform_sizes_crops_and_flips():
    image = Image.fromarray(smooth_colour_image(3, 60, 100))
    centre = PairTransform((32, 64), train=False)(image)
    assert centre.shape == (3, 32, 64) and 0 <= centre.min() and centre.max() <= 1
    torch.testing.assert_close(centre, PairTransform((32, 64), train=False)(image))
    train = PairTransform((32, 64), train=True, load_scale=1.25)
    a = train(image, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, train(image, torch.Generator().manual_seed(1)))
    crops = {train(image, torch.Generator().manual_seed(s)).sum().item() for s in range(6)}
    assert len(crops) > 1
    # Aspect-preserving: a wide 256x512-style target from a tall image covers, never stretches.
    assert PairTransform((32, 64), train=False).scaled_size(width=40, height=80) == (64, 128)
    assert PairTransform((32, 64), train=False, resize="stretch").scaled_size(width=40, height=80) == (64, 32)
    # A flip is exactly a mirror (an image of the target's aspect leaves the crop no freedom).
    exact = Image.fromarray(smooth_colour_image(3, 50, 100))
    no_flip = PairTransform((32, 64), train=True, load_scale=1.0, flip=False)(exact, torch.Generator().manual_seed(0))
    flips = [PairTransform((32, 64), train=True, load_scale=1.0)(exact, torch.Generator().manual_seed(s)) for s in range(8)]
    assert any(torch.equal(f, no_flip.flip(-1)) for f in flips) and any(torch.equal(f, no_flip) for f in flips)


def crop_areas(transform: PairTransform, width: int, height: int, seeds: int = 50) -> list[float]:
    boxes = [transform.random_box(width, height, torch.Generator().manual_seed(s)) for s in range(seeds)]
    assert all(0 <= left and right <= width and 0 <= top and bottom <= height for left, top, right, bottom in boxes)
    return [(right - left) * (bottom - top) for left, top, right, bottom in boxes]


def test_random_crops_keep_at_least_the_smallest_area():
    # Drawn areas below min_area never occur; the aspect clamp at the image's side takes at most a quarter off
    # (a 3:4 box in a 4:3 image), so every crop keeps 0.75 x min_area of the 400x300 image.
    floor = 0.6 * 400 * 300 * 0.75
    assert min(crop_areas(PairTransform((32, 32), train=True, resize="random", min_area=0.6), 400, 300)) >= floor
    assert min(crop_areas(PairTransform((32, 32), train=True, resize="random"), 400, 300)) < floor  # default 0.1
    with pytest.raises(ValueError, match="min_area"):
        PairTransform((32, 32), train=True, min_area=0.0)


def test_close_ups_are_the_given_share_of_crops_below_the_smallest_area():
    # In a 400x300 image the side clamp never touches a close-up and keeps every other crop above 0.6 of the
    # area, so the area tells the two apart.
    transform = PairTransform((30, 40), train=True, resize="random", min_area=0.6, close_up_share=0.3,
                              close_up_area=0.2)
    areas = [a / (400 * 300) for a in crop_areas(transform, 400, 300, seeds=400)]
    close_ups = [a for a in areas if a < 0.6]
    assert min(areas) >= 0.2 - 1e-9
    assert 0.2 < len(close_ups) / len(areas) < 0.4  # 0.3 +- 5 standard errors of 400 draws
    for bad in (dict(close_up_share=1.0), dict(close_up_share=0.3, close_up_area=0.6)):
        with pytest.raises(ValueError, match="close_up"):
            PairTransform((32, 32), train=True, min_area=0.6, **bad)


def test_dataset_yields_normalised_lab_and_skips_broken_files(tmp_path):
    paths = write_image_folder(tmp_path, 3)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"junk")
    dataset = ColorizationDataset([broken, *paths], PairTransform((32, 32), train=False))
    with pytest.warns(UserWarning, match="could not load .*broken.png"):
        item = dataset[0]
    assert item["path"] == str(paths[0])
    assert item["L"].shape == (1, 32, 32) and item["ab"].shape == (2, 32, 32)
    assert -1 <= item["L"].min() and item["L"].max() <= 1 and item["ab"].abs().max() <= 1
    expected = PairTransform((32, 32), train=False)(Image.open(paths[0]))
    torch.testing.assert_close(normalized_lab_to_rgb(item["L"], item["ab"]), expected, atol=1e-4, rtol=0)
    seeded = ColorizationDataset(paths, PairTransform((32, 32), train=True))
    torch.testing.assert_close(seeded[(1, 99)]["ab"], seeded[(1, 99)]["ab"])


def test_sampler_resumes_mid_epoch_and_shards():
    data = list(range(10))
    full = list(ResumableSampler(data, seed=3))
    resumed = ResumableSampler(data, seed=3)
    resumed.set_position(0, start=4)
    assert list(resumed) == full[4:]
    assert list(resumed) == full  # the skip applies to one iteration only
    later = ResumableSampler(data, seed=3)
    later.set_position(1)
    assert [i for i, _ in later] != [i for i, _ in full] and sorted(i for i, _ in later) == data
    shards = [list(ResumableSampler(data, num_replicas=2, rank=r, seed=3)) for r in range(2)]
    assert sorted(i for shard in shards for i, _ in shard) == data
    assert len({s for _, s in full}) == 10  # every sample its own augmentation seed


def test_video_frames_are_sampled_cached_and_split_by_time(tmp_path, monkeypatch):
    video = write_drifting_video(tmp_path / "film.mp4", seconds=3.0, rate=10)
    frames, duration = cached_frames(video, tmp_path / "cache", fps=2.0, cover=(32, 64))
    assert duration == pytest.approx(3.0, abs=0.15)
    assert [round(f.time, 1) for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    with Image.open(frames[0].path) as first:
        assert first.height >= 32 and first.width >= 64
    import sacolor.io.video as video_module

    monkeypatch.setattr(video_module.av, "open", lambda *a, **k: pytest.fail("decoded the video again"))
    again, _ = cached_frames(video, tmp_path / "cache", fps=2.0, cover=(32, 64))
    assert again == frames
    train, test = split_by_time(frames, duration, val_fraction=0.34)
    assert max(f.time for f in train) < min(f.time for f in test)
    assert [round(f.time, 1) for f in test] == [2.0, 2.5]


def test_video_through_collect_splits(tmp_path):
    video = write_drifting_video(tmp_path / "film.mp4", seconds=2.0, rate=10)
    train, test = collect_splits([video], val_fraction=0.25, fps=4.0, frame_cache=tmp_path / "cache", frame_cover=(32, 32))
    assert len(train) == 6 and len(test) == 2
    with pytest.raises(ValueError, match="could not decode video"):
        (tmp_path / "bad.mp4").write_bytes(b"junk")
        collect_splits([tmp_path / "bad.mp4"], frame_cache=tmp_path / "cache")
