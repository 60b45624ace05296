"""The study's statistical analysis: what is compared (``comparisons``: the planned pairs and each
dataset's metric tests), the power of the tests before any run (``power``), per-cell tests,
intervals and Holm's correction (``stats``), exact rank tests (``exact``), the exact conditional
test of rates (``fisher``), the outcomes and the declared primary hypotheses (``primary``), pooled
stratified tests (``pooled``) and their power (``planning``)."""
