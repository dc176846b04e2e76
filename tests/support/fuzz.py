"""Values for the fuzzers: the request's field names and aliases, and hostile leaves."""

from hypothesis import strategies as st

from acestep_worker.schema.request import JobRequest

FIELDS = list(JobRequest.model_fields)
ALIASES = [a for f in JobRequest.model_fields.values() for a in (getattr(f.validation_alias, "choices", None) or [])]

shallow_hostile = st.one_of(
    st.just("x" * 1_000_000), st.just("\ud800 lone surrogate"), st.integers(min_value=10**300, max_value=10**301),
    st.just(float("nan")), st.just(float("-inf")), st.lists(st.integers(), min_size=20_000, max_size=20_000),
)
