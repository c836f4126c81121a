"""The generative SLM behind an OpenAI-compatible server: llama.cpp's, or vLLM.

Same ``choose`` / ``extract`` / ``calibrate`` protocol as the local
:class:`agentflow.models.gguf.GgufModel`, over ``POST {base_url}/completions`` (httpx,
synchronous). The constraint travels in the server's own parameter:

- ``flavor="llama.cpp"`` (``python -m llama_cpp.server``): ``grammar`` (GBNF). An invalid
  grammar comes back as HTTP 200 with empty text, so every grammar is checked first.
- ``flavor="vllm"``: ``structured_outputs`` (``{"choice": [...]}`` / ``{"json": schema}``),
  which replaced the ``guided_*`` fields removed in vLLM 0.12.

Choice confidence comes from the token log-probabilities the server reports, which are
the *unconstrained* model's: at each generated token the top log-probabilities are
renormalised over the tokens that can still spell an allowed choice (a choice with no
such token in the top list gets the smallest listed probability, an upper bound on its
own), and the walk follows the generated tokens — for choices that differ at their first
token this is exactly the first-token renormalisation. Decisions are
``calibrated=False`` until :meth:`RemoteSLM.calibrate` fitted a temperature.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from agentflow.decision import Decision, ModelRef
from agentflow.errors import ConfigurationError, ModelError, ModelOutputError
from agentflow.models.choice import (
    ChoiceCalibrator,
    Chooser,
    check_grammar,
    choice_grammar,
    joiner,
)
from agentflow.settings import Settings

__all__ = ["Flavor", "RemoteSLM"]

M = TypeVar("M", bound=BaseModel)

Flavor = Literal["llama.cpp", "vllm"]
"""Which structured-output parameters the server understands."""

_TOP_LOGPROBS = 20  # vLLM refuses more than its --max-logprobs, 20 by default
_URL_HINT = (
    "start the server or fix AGENTFLOW_SLM_BASE_URL (an OpenAI-compatible base URL, "
    "e.g. http://127.0.0.1:8000/v1)"
)


def _choice_scores(
    options: dict[str, str], tokens: Sequence[str], tops: Sequence[dict[str, float]]
) -> dict[str, float]:
    """Probability per choice from the generated tokens' top log-probabilities.

    ``options`` maps each choice to the text that spells it (separator included).
    """
    scores = dict.fromkeys(options, 0.0)
    alive, done, mass = list(options), "", 1.0
    for token, top in zip(tokens, tops, strict=False):
        if not top:
            break
        weights: dict[str, float] = {}
        members: dict[str, list[str]] = {}
        for key, logprob in top.items():
            fits = [c for c in alive if key and options[c].startswith(done + key)]
            if fits:
                weights[key], members[key] = math.exp(logprob), fits
        covered = {c for fits in members.values() for c in fits}
        floor = math.exp(min(top.values()))
        for c in alive:
            if c not in covered:  # not in the top list: at most as likely as its last entry
                weights["\0" + c], members["\0" + c] = floor, [c]
        if token not in members:
            break
        total = sum(weights.values())
        for key, weight in weights.items():
            if key != token:
                for c in members[key]:
                    scores[c] += mass * weight / total / len(members[key])
        mass *= weights[token] / total
        alive, done = members[token], done + token
        if len(alive) == 1:
            break
    for c in alive:
        scores[c] += mass / len(alive)
    return scores


def _match(text: str, lead: str, choices: Sequence[str]) -> str | None:
    for candidate in (text[len(lead) :] if text.startswith(lead) else text, text.strip()):
        if candidate in choices:
            return candidate
    return None


class RemoteSLM(Chooser):
    """A small model served over HTTP, answering constrained choices and extractions."""

    source = "slm:remote"
    """Decision source tag."""

    def __init__(
        self,
        base_url: str,
        model: str = "slm",
        *,
        flavor: Flavor = "llama.cpp",
        api_key: str | None = None,
        timeout_s: float = 30.0,
        max_extract_tokens: int = 512,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        """OpenAI-compatible base URL (ending in ``/v1``)."""
        self.model = model
        """Model name sent with every request."""
        self.flavor: Flavor = flavor
        """Which structured-output parameters the server understands."""
        self.ref = ModelRef(name=model, sha256=None)
        """Identity written into every decision (remote weights cannot be hashed)."""
        self.calibration = ChoiceCalibrator()
        """Temperatures fitted per (role, prefix) by :meth:`calibrate`."""
        self.max_extract_tokens = max_extract_tokens
        """Token budget of one extraction."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

    @classmethod
    def from_settings(cls, settings: Settings, *, flavor: Flavor = "llama.cpp") -> RemoteSLM:
        """The remote SLM at ``AGENTFLOW_SLM_BASE_URL`` serving ``AGENTFLOW_SLM_MODEL``."""
        if not settings.slm_base_url:
            raise ConfigurationError(
                "no remote SLM configured",
                hint="set AGENTFLOW_SLM_BASE_URL (e.g. http://127.0.0.1:8000/v1)",
            )
        return cls(settings.slm_base_url, settings.slm_model, flavor=flavor)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/completions"
        try:
            response = self._client.post(url, json={"model": self.model, **body})
        except httpx.TransportError as exc:
            raise ModelError(f"remote SLM at {url} is unreachable: {exc}", hint=_URL_HINT) from exc
        if response.status_code >= 400:
            raise ModelError(
                f"remote SLM at {url} answered HTTP {response.status_code}: {response.text[:300]}",
                hint="check AGENTFLOW_SLM_MODEL, the flavor and the server log",
            )
        try:
            choice: dict[str, Any] = response.json()["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ModelOutputError(
                f"remote SLM at {url} did not answer a completion: {response.text[:300]}"
            ) from exc
        return choice

    def _choose_raw(
        self, prefix: str, text: str, choices: Sequence[str]
    ) -> tuple[str, dict[str, float]]:
        if not choices:
            raise ModelError("choose needs at least one choice", hint="pass the labels")
        prompt = prefix + text
        lead = joiner(prompt)
        constraint: dict[str, Any]
        if self.flavor == "llama.cpp":
            grammar = choice_grammar(choices, lead=lead)
            check_grammar(grammar)
            constraint = {"grammar": grammar}
        else:
            constraint = {"structured_outputs": {"choice": [lead + c for c in choices]}}
        answer = self._complete(
            {
                "prompt": prompt,
                "max_tokens": max(len((lead + c).encode("utf-8")) for c in choices) + 2,
                "temperature": 0.0,
                "logprobs": _TOP_LOGPROBS,
                **constraint,
            }
        )
        out = answer.get("text") or ""
        value = _match(out, lead, choices)
        if value is None:
            raise ModelOutputError(f"remote SLM answered {out[:200]!r}, not one of {list(choices)}")
        logprobs = answer.get("logprobs") or {}
        scores = _choice_scores(
            {c: lead + c for c in choices},
            logprobs.get("tokens") or [],
            logprobs.get("top_logprobs") or [],
        )
        return value, scores

    def extract(self, role: str, prefix: str, text: str, schema: type[M]) -> Decision[M]:
        """A validated ``schema`` instance; output that fails validation: ModelOutputError.

        Confidence is the geometric mean of the reported token probabilities (vLLM);
        llama.cpp's server is not asked for them (it sorts the whole vocabulary in Python
        per token), so its extractions carry confidence 0 and always escalate.
        """
        start = time.perf_counter()
        json_schema = schema.model_json_schema()
        body: dict[str, Any] = {
            "prompt": prefix + text + joiner(prefix + text),
            "max_tokens": self.max_extract_tokens,
            "temperature": 0.0,
        }
        if self.flavor == "llama.cpp":
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            body["grammar"] = json_schema_to_gbnf(json.dumps(json_schema))
            check_grammar(body["grammar"])
        else:
            body["structured_outputs"] = {"json": json_schema}
            body["logprobs"] = 1
        answer = self._complete(body)
        out = answer.get("text") or ""
        try:
            instance = schema.model_validate_json(out)
        except ValidationError as exc:
            raise ModelOutputError(
                f"{schema.__name__} rejected the remote SLM output {out[:300]!r}"
            ) from exc
        token_logprobs = [
            lp
            for lp in (answer.get("logprobs") or {}).get("token_logprobs") or []
            if lp is not None
        ]
        confidence = math.exp(sum(token_logprobs) / len(token_logprobs)) if token_logprobs else 0.0
        return Decision[M](
            role=role,
            value=instance,
            confidence=min(1.0, max(0.0, confidence)),
            source="slm:remote",
            model=self.ref,
            latency_ms=(time.perf_counter() - start) * 1000,
            calibrated=False,
            rationale=None if token_logprobs else "server reported no token log-probabilities",
            input=text,
        )
