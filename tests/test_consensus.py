"""The consensus of generators: the rule, the shared encoder, and the checkpoint that holds one."""

import math

import pytest
import torch

from sacolor.checkpoint import load_generator, save_checkpoint
from sacolor.inference.colorizer import Colorizer
from sacolor.inference.hints import Hint
from sacolor.models import build_generator
from sacolor.models.consensus import ConsensusGenerator, consensus_ab
from sacolor.training.build import start_from

SIZE = 64
MEMBER = {"name": "efficientnet_unet", "kwargs": {"input_size": [SIZE, SIZE], "sa_sizes": []}}
CONTEXT_MEMBER = {"name": "efficientnet_unet", "kwargs": {**MEMBER["kwargs"], "global_context": True}}


def pixel(*abs_: tuple[float, float]) -> torch.Tensor:
    """Members' ab at one pixel: (M, 1, 2, 1, 1)."""
    return torch.tensor(abs_, dtype=torch.float64).view(len(abs_), 1, 2, 1, 1)


def test_members_that_agree_give_the_weakest_chroma_in_their_hue():
    out = consensus_ab(pixel((0.3, 0.4), (0.6, 0.8)))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.3, 0.4], dtype=torch.float64))


@pytest.mark.parametrize("degrees, agreement", [(60, 0.5), (90, 0.0), (180, 0.0), (135, 0.0)])
def test_disagreement_fades_to_gray(degrees, agreement):
    turn = math.radians(degrees)
    out = consensus_ab(pixel((0.5, 0.0), (0.5 * math.cos(turn), 0.5 * math.sin(turn)))).flatten()
    assert out.norm().item() == pytest.approx(0.5 * agreement, abs=1e-9)
    if agreement:  # the hue is the members' mean's: halfway between
        assert math.degrees(math.atan2(out[1].item(), out[0].item())) == pytest.approx(degrees / 2)


def test_the_least_agreeing_pair_decides_and_no_member_is_exceeded():
    torch.manual_seed(0)
    members = torch.randn(3, 2, 2, 5, 7, dtype=torch.float64)
    out = consensus_ab(members)
    assert out.shape == (2, 2, 5, 7)
    assert bool((out.norm(dim=1) <= members.norm(dim=2).amin(0) + 1e-12).all())
    same = consensus_ab(torch.stack([members[0], members[0]]))
    torch.testing.assert_close(same, members[0])


def test_members_ab_of_a_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"members_ab must be \(M >= 2, B, 2, H, W\); got \(1, 1, 2, 4, 4\)"):
        consensus_ab(torch.zeros(1, 1, 2, 4, 4))


def members(*specs) -> list[torch.nn.Module]:
    """Random members sharing the first's encoder weights, as runs with the frozen ImageNet encoder do."""
    built = []
    for i, spec in enumerate(specs):
        torch.manual_seed(i)
        g = build_generator(spec["name"], **spec["kwargs"]).eval()
        if built:
            g.encoder.load_state_dict(built[0].encoder.state_dict())
        built.append(g)
    return built


def test_the_generator_is_the_consensus_of_its_members_and_runs_the_encoder_once():
    parts = members(MEMBER, CONTEXT_MEMBER)
    consensus = ConsensusGenerator(parts).eval()
    consensus.tie_encoders()
    l_norm = torch.rand(2, 1, SIZE, SIZE) * 2 - 1
    hints = torch.zeros(2, 3, SIZE, SIZE)
    hints[:, :, 10, 20] = torch.tensor([0.4, -0.2, 1.0])
    calls = []
    encoder = consensus.members[0].encoder
    features = encoder.features
    encoder.features = lambda x: calls.append(1) or features(x)  # every member's encoder, once tied
    with torch.no_grad():
        out = consensus(l_norm, hints=hints)
        assert len(calls) == 1
        expected = consensus_ab(torch.stack([p(l_norm, hints=hints) for p in parts]))
    torch.testing.assert_close(out, expected)
    assert consensus.accepts_hints and consensus.multiple == parts[0].multiple


def test_fewer_than_two_members_are_refused():
    with pytest.raises(ValueError, match="at least 2 members; got 1"):
        ConsensusGenerator(members(MEMBER))


def save_consensus(folder, parts, specs, **config):
    tensors = {f"ema.members.{i}.{k}": v for i, p in enumerate(parts) for k, v in p.state_dict().items()}
    return save_checkpoint(folder, tensors, {"step": 1, "size": [SIZE, SIZE], **config,
                                             "generator": {"name": "consensus", "members": list(specs)}})


def test_a_consensus_checkpoint_loads_with_one_encoder_and_colourises_with_its_curve(tmp_path):
    parts = members(MEMBER, CONTEXT_MEMBER)
    weights = save_consensus(tmp_path, parts, [MEMBER, CONTEXT_MEMBER], chroma_gain=1.4)
    generator, config = load_generator(weights)
    assert isinstance(generator, ConsensusGenerator) and config["chroma_gain"] == 1.4
    assert generator.members[1].encoder is generator.members[0].encoder
    l_norm = torch.rand(1, 1, SIZE, SIZE) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(generator(l_norm), consensus_ab(torch.stack([p(l_norm) for p in parts])))
    colorizer = Colorizer.from_checkpoint(weights, "cpu")
    gray = torch.full((1, 1, 40, 50), 50.0)
    ab = colorizer.predict_ab(gray, colorizer.hint_channels([Hint(5, 5, (200, 40, 30))], (40, 50)))
    assert ab.shape[:2] == (1, 2) and colorizer.chroma_gain == 1.4


def test_members_with_different_encoders_are_refused_by_name(tmp_path):
    parts = members(MEMBER, MEMBER)
    torch.manual_seed(5)
    parts[1].encoder.load_state_dict(build_generator("efficientnet_unet", **MEMBER["kwargs"]).encoder.state_dict())
    weights = save_consensus(tmp_path, parts, [MEMBER, MEMBER])
    with pytest.raises(ValueError, match=r"latest.safetensors: consensus member 1's encoder differs from member 0's"):
        load_generator(weights)


@pytest.mark.parametrize("entry, message", [
    ({"name": "consensus", "members": [MEMBER]}, "needs a 'members' list of at least 2 generator entries"),
    ({"name": "consensus"}, "needs a 'members' list of at least 2"),
    ({"name": "consensus", "members": [MEMBER, {"name": "unet_512"}]}, "generator member 1 name must be one of"),
    ({"name": "consensus", "members": [MEMBER, {**MEMBER, "kwargs": {"norm": "group", "input_size": [SIZE, SIZE]}}]},
     "its generator member 1 entry cannot be built: norm must be one of"),
])
def test_bad_consensus_entries_are_refused_naming_the_file(tmp_path, entry, message):
    save_checkpoint(tmp_path, {"ema.x": torch.zeros(1)}, {"step": 1, "size": [SIZE, SIZE], "generator": entry})
    with pytest.raises(ValueError, match=f"latest.json.*{message}"):
        load_generator(tmp_path)


def test_init_from_a_consensus_starts_from_its_first_member(tmp_path):
    parts = members(MEMBER, CONTEXT_MEMBER)
    weights = save_consensus(tmp_path, parts, [MEMBER, CONTEXT_MEMBER])
    torch.manual_seed(9)
    fresh = build_generator(MEMBER["name"], **MEMBER["kwargs"])
    assert start_from(fresh, str(weights)) == []
    for name, value in fresh.state_dict().items():
        torch.testing.assert_close(value, parts[0].state_dict()[name])
