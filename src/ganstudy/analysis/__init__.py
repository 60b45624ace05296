"""The study's statistical analysis: exact tests (``exact``), the outcomes and the declared primary
hypotheses (``primary``), pooled stratified tests (``pooled``) and their power (``planning``)."""
