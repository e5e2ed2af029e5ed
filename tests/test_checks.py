"""The shared checks (``rbpsolve._checks``, published to adapters as ``rbpsolve.extending``),
the backend's device and dtype helpers, and the rule that adapters import no private module."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

import rbpsolve
from rbpsolve import _backend, extending
from rbpsolve._checks import check_same_space

ADAPTERS = pathlib.Path(__file__).resolve().parents[1] / "adapters"


def _space(array):
    return extending.space_like(array, "like")


# ----------------------------------------------------------------------------- arrays
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_space_like_names_the_argument():
    space = _space(np.zeros((2, 3), dtype=np.float32))
    assert space.shape == (2, 3) and space.dtype == np.float32 and space.device == "cpu"
    with pytest.raises(TypeError, match=r"^h0 must be an array \(numpy, torch, cupy or any array-API array\).*list"):
        extending.space_like([0.0], "h0")
    with pytest.raises(TypeError, match=r"^h0 has dtype int64; rbpsolve solves real floating-point systems"):
        extending.space_like(np.zeros(2, dtype=np.int64), "h0")
    with pytest.raises(TypeError, match=r"h0 is a numpy.matrix; pass a plain array instead: numpy.asarray\(h0\)"):
        extending.space_like(np.matrix(np.zeros((2, 2))), "h0")


def test_check_input_names_problem_and_fix():
    space = _space(np.zeros(4))
    extending.check_input(np.ones(4), space, "g", "J acts on arrays")
    cases = [
        ([1.0] * 4, TypeError, r"^g must be an array; got list$"),
        (np.ones(5), ValueError, r"^g has shape \(5,\) but J acts on arrays of shape \(4,\)$"),
        (np.ones(4, np.float32), TypeError,
         r"^g has dtype float32 but the operator works in float64; cast g \(e.g. g.astype\) or build the operator "
         r"with a `like` array of dtype float32$"),
        (np.ones(4, np.int64), TypeError, r"^g has dtype int64 but the operator works in float64; cast g "
                                          r"\(e.g. g.astype\)$"),
        (np.array([0.0, np.inf, 0.0, 0.0]), ValueError, r"^g contains NaN or inf; the solve needs finite values$"),
    ]
    for array, error, match in cases:
        with pytest.raises(error, match=match):
            extending.check_input(array, space, "g", "J acts on arrays")


def test_check_product_names_the_callback():
    space = _space(np.zeros(3))
    x = np.ones(3)
    assert extending.check_product(x, space, "vjp") is x
    cases = [
        (None, TypeError, r"^vjp returned NoneType, not an array$"),
        (np.ones(2), ValueError, r"^vjp returned an array of shape \(2,\) but the operator maps to arrays of shape "
                                 r"\(3,\); the callback must return an array shaped like its `like` array$"),
        (np.ones(3, np.float32), TypeError, r"^vjp returned dtype float32 but the operator works in float64; cast "
                                            r"inside the callback or build the operator with a `like` array of "
                                            r"float32$"),
        (np.ones(3, np.int32), TypeError, r"^vjp returned dtype int32 but the operator works in float64; cast "
                                          r"inside the callback$"),
    ]
    for out, error, match in cases:
        with pytest.raises(error, match=match):
            extending.check_product(out, space, "vjp")


def test_check_map_output_names_the_map_and_its_state():
    space = _space(np.zeros(3))
    h = np.zeros(3)
    with pytest.raises(ValueError, match=r"^F returned its own input array \(it updates h in place"):
        extending.check_map_output(h, space, given=h)
    assert extending.check_map_output(h, space) is h  # without `given`, returning h is not checked
    with pytest.raises(TypeError, match=r"^F returned float, not an array; F must map a state to a state$"):
        extending.check_map_output(1.0, space)
    with pytest.raises(ValueError, match=r"^F returned an array of shape \(2,\) but h0 has shape \(3,\); F must map "
                                         r"the state to a state of the same shape$"):
        extending.check_map_output(np.zeros(2), space)
    with pytest.raises(TypeError, match=r"^F returned dtype float32 but h0 has dtype float64; cast inside F or pass "
                                        r"h0 of dtype float32$"):
        extending.check_map_output(np.zeros(3, np.float32), space)
    with pytest.raises(TypeError, match=r"^F returned dtype int64 but h0 has dtype float64; cast inside F$"):
        extending.check_map_output(np.zeros(3, np.int64), space)
    # The torch adapter's wording: its map is f, its arrays tensors.
    with pytest.raises(TypeError, match=r"^f returned list, not a tensor; f must map a state to a state$"):
        extending.check_map_output([0.0], space, name="f", state="h", noun="tensor")
    with pytest.raises(ValueError, match=r"^f returned a tensor of shape \(2,\) but h has shape \(3,\)"):
        extending.check_map_output(np.zeros(2), space, name="f", state="h", noun="tensor")


def test_library_and_device_mismatches_are_named():
    strict = pytest.importorskip("array_api_strict")
    if not hasattr(strict, "Device"):  # pragma: no cover - older array_api_strict
        pytest.skip("this array_api_strict has a single device")
    space = _space(strict.zeros(3, dtype=strict.float64))
    elsewhere = strict.zeros(3, dtype=strict.float64, device=strict.Device("device1"))
    with pytest.raises(TypeError, match=r"^g is a numpy array but the operator works on array_api_strict arrays; "
                                        r"convert g"):
        extending.check_input(np.zeros(3), space, "g", "J acts on arrays")
    with pytest.raises(ValueError, match=r"^g is on device .*device1.* but the operator works on .*CPU_DEVICE.*; "
                                         r"move g there$"):
        extending.check_input(elsewhere, space, "g", "J acts on arrays")
    with pytest.raises(TypeError, match=r"^vjp returned a numpy.ndarray but the operator works on array_api_strict"):
        extending.check_product(np.zeros(3), space, "vjp")
    with pytest.raises(ValueError, match=r"^vjp returned an array on device .*device1.* but the operator works on "
                                         r".*CPU_DEVICE.*; move it there inside the callback$"):
        extending.check_product(elsewhere, space, "vjp")
    with pytest.raises(TypeError, match=r"^F returned a numpy.ndarray for a array_api_strict state; F must return "
                                        r"an array of the library of h0$"):
        extending.check_map_output(np.zeros(3), space)
    with pytest.raises(ValueError, match=r"^F returned an array on .*device1.* but h0 is on .*CPU_DEVICE"):
        extending.check_map_output(elsewhere, space)
    with pytest.raises(ValueError, match=r"^the left operand lives on device .*CPU_DEVICE.* but the right operand "
                                         r"on .*device1.*; move one of them$"):
        check_same_space(space, _space(elsewhere), "the left operand", "the right operand")
    # Through the public entry points too: a callback on the wrong device.
    J = rbpsolve.JacobianOperator(lambda u: elsewhere, like=strict.zeros(3, dtype=strict.float64))
    with pytest.raises(ValueError, match=r"^vjp returned an array on device"):
        rbpsolve.solve_adjoint(J, strict.ones(3, dtype=strict.float64), rbpsolve.Neumann(max_steps=3))


def test_check_same_space_names_both_sides():
    a, b = _space(np.zeros(3)), _space(np.zeros(4))
    check_same_space(a, _space(np.ones(3)), "I", "the operator")
    with pytest.raises(ValueError, match=r"^I acts on arrays of shape \(3,\) but the operator on shape \(4,\)$"):
        check_same_space(a, b, "I", "the operator")
    with pytest.raises(TypeError, match=r"^I works in float64 but the operator in float32; build both with one dtype"):
        check_same_space(a, _space(np.zeros(3, np.float32)), "I", "the operator")


# ----------------------------------------------------------------------------- solvers
def test_check_solver_kind_linear():
    gmres = rbpsolve.GMRES()
    assert extending.check_solver_kind(gmres, "linear") == (gmres,)
    chain = rbpsolve.Fallback(rbpsolve.Neumann(), gmres)
    assert extending.check_solver_kind(chain, "linear") == chain.solvers
    cases = [
        (rbpsolve.GMRES, r"^pass solver settings, not the class: GMRES\(\) instead of GMRES$"),
        (rbpsolve.Picard, r"^pass solver settings, not the class: Picard\(\) instead of Picard$"),
        (rbpsolve.Picard(), r"^Picard finds fixed points h = F\(h\); solver must be a linear solver such as "
                            r"rbpsolve.GMRES\(rtol=1e-8\) \(Picard is a forward solver: use it with "
                            r"rbpsolve.fixed_point\)$"),
        (rbpsolve.Fallback(gmres, rbpsolve.Anderson()), r"^Anderson finds fixed points"),
        ("gmres", r"^solver must be rbpsolve solver settings such as rbpsolve.GMRES\(rtol=1e-8\); got 'gmres'$"),
    ]
    for solver, match in cases:
        with pytest.raises(TypeError, match=match):
            extending.check_solver_kind(solver, "linear")


def test_check_solver_kind_forward():
    # The messages rbpsolve.fixed_point's own check gives (tests/test_forward_solvers.py), so
    # that check can be this one.
    picard = rbpsolve.Picard()
    assert extending.check_solver_kind(picard, "forward") == (picard,)
    cases = [
        (rbpsolve.Picard, r"Picard\(\) instead of Picard"),
        (rbpsolve.GMRES(), r"^GMRES solves the linear adjoint system; solver must be a forward solver such as "
                           r"rbpsolve.Picard\(rtol=1e-6\) or rbpsolve.Anderson\(\) \(GMRES is a linear solver: use "
                           r"it with rbpsolve.solve_adjoint or rbpsolve.solve\)$"),
        (rbpsolve.Fallback(picard, rbpsolve.Neumann()), r"^Neumann solves the linear"),
        ("picard", r"^solver must be forward-solver settings such as rbpsolve.Picard\(rtol=1e-6\)"),
    ]
    for solver, match in cases:
        with pytest.raises(TypeError, match=match):
            extending.check_solver_kind(solver, "forward")
    with pytest.raises(ValueError, match="kind must be 'linear' or 'forward'"):
        extending.check_solver_kind(picard, "adjoint")


def test_check_solver_kind_for_a_keyword_argument():
    # The torch adapter's backward=: "takes", its own example, and where the other kind goes.
    kwargs = dict(argument="backward=", example="rbpsolve.Neumann(max_steps=20)", other="forward=")
    with pytest.raises(TypeError, match=r"^Picard finds fixed points h = F\(h\); backward= takes a linear solver such "
                                        r"as rbpsolve.Neumann\(max_steps=20\) \(Picard is a forward solver: pass it "
                                        r"as forward=\)$"):
        extending.check_solver_kind(rbpsolve.Picard(), "linear", **kwargs)
    with pytest.raises(TypeError, match=r"^backward= takes rbpsolve solver settings such as "
                                        r"rbpsolve.Neumann\(max_steps=20\); got 3$"):
        extending.check_solver_kind(3, "linear", **kwargs)


def test_continue_prob_check_is_published():
    extending.check_continue_prob(0.5)
    with pytest.raises(ValueError, match=r"continue_prob must lie in \(0, 1\]"):
        extending.check_continue_prob(1.5)


# ----------------------------------------------------------------------------- backend helpers
def test_same_device_numpy_and_strings():
    x = np.zeros(2)
    assert _backend.same_device(_backend.device_of(x), _backend.device_of(np.ones(3)))
    assert _backend.same_device("cpu", "cpu") and not _backend.same_device("cpu", "cuda:0")
    assert _backend.on_device(x, "cpu")


def test_same_device_torch():
    torch = pytest.importorskip("torch")
    cpu = _backend.device_of(torch.zeros(2))
    assert _backend.same_device(cpu, torch.device("cpu")) and _backend.same_device(cpu, _backend.device_of(torch.ones(1)))
    assert not _backend.same_device(cpu, torch.device("cuda", 0))
    assert not _backend.same_device(torch.device("cuda", 0), torch.device("cuda", 1))
    assert _backend.on_device(torch.zeros(2), torch.device("cpu"))
    if torch.cuda.is_available():
        assert not _backend.on_device(torch.zeros(2, device="cuda"), cpu)


def test_machine_eps_and_numpy_dtype_read_no_array():
    assert _backend.machine_eps(np, np.float32) == float(np.finfo(np.float32).eps)
    assert _backend.numpy_dtype(np, np.dtype(np.float32)) == np.float32
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xp

    assert _backend.machine_eps(xp, torch.float64) == float(np.finfo(np.float64).eps)
    assert _backend.machine_eps(xp, torch.bfloat16) == 2.0**-7
    assert _backend.numpy_dtype(xp, torch.float32) == np.float32


# ----------------------------------------------------------------------------- adapters' imports
def _private_rbpsolve_imports(path: pathlib.Path, root: pathlib.Path = ADAPTERS) -> list[str]:
    """Modules or names of the rbpsolve core (outside rbpsolve.adapters) that ``path``, a file
    under ``root`` (installed as ``rbpsolve.adapters``), imports and that are neither
    ``rbpsolve`` nor ``rbpsolve.extending`` nor public names of them."""
    package = "rbpsolve." + ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            modules = [(base, alias.name) for alias in node.names]
        else:
            continue
        for module, name in modules:
            if module.startswith("rbpsolve.adapters") or not (module == "rbpsolve" or module.startswith("rbpsolve.")):
                continue
            if module not in ("rbpsolve", "rbpsolve.extending") or (name or "").startswith("_"):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {module} {name or ''}".strip())
    return found


def test_adapters_import_no_private_rbpsolve_module():
    files = sorted(ADAPTERS.rglob("*.py"))
    assert len(files) > 20  # the torch adapter and the three tasks
    found = [hit for path in files for hit in _private_rbpsolve_imports(path)]
    assert found == []
    text = [f"{p.name}: {line}" for p in files for line in p.read_text(encoding="utf-8").splitlines()
            if "rbpsolve._" in line]
    assert text == []


def test_the_import_rule_can_see_a_private_import(tmp_path):
    # The same reader does flag the imports the rule forbids (so the test above can fail).
    root = tmp_path / "adapters"
    fake = root / "torch" / "_probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        "from rbpsolve._forward.solve import check_forward_solver\n"
        "from ... import _backend\n"
        "from rbpsolve import _space\n"
        "import rbpsolve._solvers.gmres\n"
        "from rbpsolve.extending import check_input\n"
        "from rbpsolve import solve\n"
        "from ._jacobian import check_output\n"
        "from .. import tasks\n",
        encoding="utf-8",
    )
    hits = _private_rbpsolve_imports(fake, root)
    assert [h.split(": ", 1)[1] for h in hits] == [
        "rbpsolve._forward.solve check_forward_solver",
        "rbpsolve _backend",
        "rbpsolve _space",
        "rbpsolve._solvers.gmres",
    ]


def test_extending_names_are_documented():
    assert sorted(extending.__all__) == sorted(set(extending.__all__))
    for name in extending.__all__:
        assert (getattr(extending, name).__doc__ or "").strip(), name
    assert "Stability" in extending.__doc__
