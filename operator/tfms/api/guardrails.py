"""TFModelServicePolicy: guardrails platform owners write once, checked on every path.

The schema is defined here once (the CRD in crds/ is generated from it) and `check` is the one
pure checker used at admission, by the reconciler and by `tfms validate --policy`. Each
violation names the policy, its rule and the spec field, so a refusal says whom to ask.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

import jsonschema

from tfms.api import names
from tfms.api.defaults import Defaults
from tfms.api.errors import FieldError, SpecInvalid
from tfms.api.model import TFModelService
from tfms.api.schema import CEL, JSON, _bool, _int, _list, _obj, _rule, _str
from tfms.api.validation import parse

MEMBER_TYPES: Final = ("user", "group", "serviceAccount", "domain", "principal", "principalSet")
PIN_DIGEST: Final = "Digest"
PIN_EXACT_TAG: Final = "ExactTag"
GPU_TYPES: Final = ("nvidia-l4", "nvidia-rtx-pro-6000")
_DIGEST: Final = re.compile(r"@sha256:[0-9a-f]{64}$")
# A release, not a moving pointer: 2.19.0, v1.4.2, 2.19.0-gpu. `2`, `2.19`, `latest`, `nightly` move.
_EXACT_TAG: Final = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+.][0-9A-Za-z.-]+)?$")

POLICY_SPEC_SCHEMA: Final[JSON] = _obj(
    "Guardrails every TFModelService in scope must satisfy; checked at admission, by the operator and by "
    "`tfms validate --policy`. An absent list means no restriction; an empty list allows nothing.",
    {
        "namespaces": _list("Namespaces this policy applies to; absent or empty: every namespace.",
                            {"type": "string", "maxLength": 63}, 1000),
        "invokers": _obj(
            "Who may be granted roles/run.invoker through spec.access.invokers.",
            {
                "allowedDomains": _list(
                    "Email domains (user:, group:, serviceAccount:) and domain: members must belong to, e.g. "
                    "example.com or example-project.iam.gserviceaccount.com; subdomains are included.",
                    {"type": "string", "maxLength": 253}, 100),
                "allowedMemberTypes": _list("Member kinds allowed.", {"type": "string", "enum": list(MEMBER_TYPES)},
                                            len(MEMBER_TYPES)),
            },
        ),
        "publicAllowed": _bool("Whether spec.access.public: true (allUsers or invoker IAM disabled) is allowed "
                               "(default false)."),
        "allowedProjects": _list("Google Cloud projects services may run in.", {"type": "string", "maxLength": 30},
                                 1000),
        "allowedRegions": _list("Cloud Run regions services may run in.", {"type": "string", "maxLength": 63}, 200),
        "images": _obj(
            "Where model server images may come from and how they are pinned.",
            {
                "allowedRegistries": _list(
                    "Image prefixes, e.g. us-docker.pkg.dev/example-project/ or docker.io/tensorflow/serving "
                    "(Docker Hub short names are read as docker.io/...).", {"type": "string", "maxLength": 1024},
                    100),
                "pinning": _str("Digest: images must name a sha256 digest. ExactTag (default): a digest or a full "
                                "release tag such as 2.19.0 (never latest, 2 or 2.19).",
                                enum=[PIN_DIGEST, PIN_EXACT_TAG]),
            },
        ),
        "gpu": _obj(
            "GPU ceilings.",
            {
                "allowedTypes": _list("GPU types allowed; an empty list forbids GPUs.",
                                      {"type": "string", "enum": list(GPU_TYPES)}, len(GPU_TYPES)),
                "maxInstances": _int("Highest scaling.maxInstances of a GPU service (each instance holds one GPU).",
                                     minimum=0, maximum=1000),
            },
        ),
        "maxInstances": _int("Highest scaling.maxInstances of any service.", minimum=1, maximum=1000),
        "serviceAccount": _obj(
            "The identity revisions run as.",
            {
                "required": _bool("spec.serviceAccount must be set (not the default compute service account)."),
                "allowed": _list("Service account emails allowed, or @DOMAIN suffixes such as "
                                 "@example-project.iam.gserviceaccount.com.", {"type": "string", "maxLength": 320},
                                 1000),
            },
        ),
    },
)


def policy_object_schema() -> JSON:
    return {
        "type": "object",
        "description": "Guardrails for TFModelService objects, written once by platform owners.",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": POLICY_SPEC_SCHEMA,
        },
        "required": ["spec"],
        CEL: [_rule("!has(self.spec.gpu) || !has(self.spec.gpu.maxInstances) || !has(self.spec.maxInstances) || "
                    "self.spec.gpu.maxInstances <= self.spec.maxInstances",
                    "gpu.maxInstances must not exceed maxInstances", ".spec.gpu.maxInstances")],
    }


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(POLICY_SPEC_SCHEMA)
    return cls(POLICY_SPEC_SCHEMA)  # type: ignore[no-any-return]


def policy_errors(obj: Mapping[str, Any]) -> list[FieldError]:
    """What is wrong with a policy object itself (for `tfms validate --policy`)."""
    errors: list[FieldError] = []
    if obj.get("apiVersion") != names.API_VERSION:
        errors.append(FieldError("apiVersion", "api-version", f"must be {names.API_VERSION}", obj.get("apiVersion")))
    if obj.get("kind") != names.POLICY_KIND:
        errors.append(FieldError("kind", "kind", f"must be {names.POLICY_KIND}", obj.get("kind")))
    if not _name(obj):
        errors.append(FieldError("metadata.name", "required", "a policy needs a name"))
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [*errors, FieldError("spec", "required", "spec must be an object")]
    for err in _validator().iter_errors(spec):
        path = "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        errors.append(FieldError(path, f"schema-{err.validator}", err.message.split("\n")[0]))
    return sorted(errors)


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""


def _applies(spec: Mapping[str, Any], namespace: str) -> bool:
    scope = spec.get("namespaces") or []
    return not scope or namespace in scope


def _member_type(member: str) -> str:
    if member.startswith("principalSet://"):
        return "principalSet"
    if member.startswith("principal://"):
        return "principal"
    return member.split(":", 1)[0]


def _member_domain(member: str) -> str | None:
    kind, _, rest = member.partition(":")
    if kind == "domain":
        return rest.lower()
    if kind in ("user", "group", "serviceAccount") and "@" in rest:
        return rest.rsplit("@", 1)[1].lower()
    return None  # principal:// identities carry no email domain


def _in_domains(domain: str, allowed: Iterable[str]) -> bool:
    return any(domain == d.lower().lstrip("@.") or domain.endswith("." + d.lower().lstrip("@.")) for d in allowed)


def normalize_image(image: str) -> str:
    """`tensorflow/serving:2.19.0` as Docker reads it: docker.io/tensorflow/serving:2.19.0."""
    first = image.split("/", 1)[0]
    if "/" not in image:
        return f"docker.io/library/{image}"
    if "." in first or ":" in first or first == "localhost":
        return image
    return f"docker.io/{image}"


def _image_tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return last.split("@", 1)[0].rpartition(":")[2] if ":" in last.split("@", 1)[0] else ""


def check(policy: Mapping[str, Any], svc: TFModelService) -> Iterator[FieldError]:
    """Every rule of one policy that the (validated, defaulted) service breaks."""
    name = _name(policy) or "(unnamed)"
    spec = policy.get("spec") or {}
    if not isinstance(spec, Mapping) or not _applies(spec, svc.namespace):
        return

    def violation(path: str, rule: str, message: str, value: Any = None) -> FieldError:
        return FieldError(path, f"{name}:{rule}", f"{names.POLICY_KIND} {name}: {message}", value)

    invokers = spec.get("invokers") or {}
    types, domains = invokers.get("allowedMemberTypes"), invokers.get("allowedDomains")
    for i, member in enumerate(svc.access.invokers):
        path = f"spec.access.invokers[{i}]"
        kind = _member_type(member)
        if types is not None and kind not in types:
            yield violation(path, "invoker-member-type", f"{kind} members are not allowed (allowed: "
                            f"{', '.join(types) or 'none'})", member)
        domain = _member_domain(member)
        if domains is not None and (domain is None or not _in_domains(domain, domains)):
            yield violation(path, "invoker-domain", f"members must belong to {', '.join(domains) or 'no domain'}",
                            member)
    if svc.access.public and not spec.get("publicAllowed", False):
        yield violation("spec.access.public", "public-allowed", "public services (allUsers) are not allowed", True)
    projects, regions = spec.get("allowedProjects"), spec.get("allowedRegions")
    if projects is not None and svc.project not in projects:
        yield violation("spec.project", "allowed-projects", f"projects allowed: {', '.join(projects) or 'none'}",
                        svc.project)
    if regions is not None and svc.region not in regions:
        yield violation("spec.region", "allowed-regions", f"regions allowed: {', '.join(regions) or 'none'}",
                        svc.region)
    images = spec.get("images") or {}
    image = svc.runtime.image
    registries = images.get("allowedRegistries")
    if registries is not None and not any(normalize_image(image).startswith(normalize_image(r).rstrip(":"))
                                          or image.startswith(r) for r in registries):
        yield violation("spec.runtime.image", "image-registry",
                        f"images must come from {', '.join(registries) or 'no registry'}", image)
    pinning = images.get("pinning", PIN_EXACT_TAG) if images else None
    if pinning == PIN_DIGEST and not _DIGEST.search(image):
        yield violation("spec.runtime.image", "image-pinning", "images must be pinned by digest (@sha256:...)", image)
    elif pinning == PIN_EXACT_TAG and not _DIGEST.search(image) and not _EXACT_TAG.match(_image_tag(image)):
        yield violation("spec.runtime.image", "image-pinning",
                        "images must be pinned by digest or an exact release tag such as 2.19.0", image)
    gpu = spec.get("gpu") or {}
    if svc.runtime.gpu is not None:
        allowed_gpus = gpu.get("allowedTypes")
        if allowed_gpus is not None and svc.runtime.gpu.type not in allowed_gpus:
            yield violation("spec.runtime.gpu.type", "gpu-type",
                            f"GPU types allowed: {', '.join(allowed_gpus) or 'none'}", svc.runtime.gpu.type)
        ceiling = gpu.get("maxInstances")
        if isinstance(ceiling, int) and svc.scaling.max_instances > ceiling:
            yield violation("spec.scaling.maxInstances", "gpu-max-instances",
                            f"a GPU service may have at most {ceiling} instances", svc.scaling.max_instances)
    ceiling = spec.get("maxInstances")
    if isinstance(ceiling, int) and svc.scaling.max_instances > ceiling:
        yield violation("spec.scaling.maxInstances", "max-instances", f"at most {ceiling} instances",
                        svc.scaling.max_instances)
    account = spec.get("serviceAccount") or {}
    sa = svc.service_account
    if account.get("required") and (not sa or sa.endswith("-compute@developer.gserviceaccount.com")):
        yield violation("spec.serviceAccount", "service-account-required",
                        "set a dedicated service account (not the default compute one)", sa or None)
    allowed_sas = account.get("allowed")
    if sa and allowed_sas is not None and not any(
            sa == a or (a.startswith("@") and sa.endswith(a)) for a in allowed_sas):
        yield violation("spec.serviceAccount", "service-account-allowed",
                        f"service accounts allowed: {', '.join(allowed_sas) or 'none'}", sa)


def check_all(policies: Sequence[Mapping[str, Any]], svc: TFModelService) -> list[FieldError]:
    return sorted({e for p in policies for e in check(p, svc)})


def enforce_policies(policies: Sequence[Mapping[str, Any]], obj: Mapping[str, Any],
                     defaults: Defaults | None = None, source: str = "") -> None:
    """Raise `SpecInvalid` listing every policy rule the object breaks (it must already be valid)."""
    if not policies:
        return
    violations = check_all(policies, parse(obj, defaults, source))
    if violations:
        raise SpecInvalid(violations, source)
