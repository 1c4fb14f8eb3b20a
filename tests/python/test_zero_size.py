"""Zero-size inputs through the CPU kernels (zero_size.py says what each output must be).
The same checks run on CUDA in test_cuda_scan.py."""
import pytest

from zero_size import ZERO_SIZE_SHAPES, check_zero_size


@pytest.mark.parametrize("shape", ZERO_SIZE_SHAPES)
@pytest.mark.parametrize("with_z", [True, False])
@pytest.mark.parametrize("rule", ["mambalrp", "exact"])
def test_zero_size_cpu(ops, shape, with_z, rule):
    check_zero_size(ops, shape, "cpu", with_z, rule)
