"""LayerFusion's wire protocol, shared by the backend and the Krita plugin (standard library only).

Import from the modules: ``shared.protocol`` (messages, limits, endpoints), ``shared.fields``
(parsing, validation, JSON Schema), ``shared.png`` (PNG headers), ``shared.sizes`` (size mapping).
"""
