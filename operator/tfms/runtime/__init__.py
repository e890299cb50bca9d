"""A local stand-in for `tensorflow_model_server` (REST only).

The real binary cannot be installed here (it ships only through Google's apt repo), so
local mode serves SavedModels with the same flags, URLs, JSON and error messages.
Modules other than `loader`, `models` (at call time) and `server` never import
tensorflow, so flag/config/JSON logic can be tested without paying its import cost.
"""
