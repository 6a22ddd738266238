"""``latentatlas serve``: the latent space explored in the browser.

One page from the package (``index.html``, no external script, font or request: the server
sends a Content-Security-Policy that forbids them) talks to a small JSON/PNG API:

* ``GET /api/info`` — the model, its direction sets, sampling strategies with their parameters,
  walks, inversion spaces and regularisers, report link;
* ``GET /api/sample?seed=S&n=N`` — a sample grid (PNG); ``POST /api/class {"class": K}`` — the class
  of a conditional model for everything after;
* ``POST /api/render`` ``{"latent": {"seed": S} | {"job": ID}, "set": NAME, "amounts": [..]}`` —
  one image edited along the set's first directions by the slider amounts (σ units), PNG;
* ``POST /api/strategies`` ``{"seed": S, "strategies": {NAME: {param: value}}}`` — the same seed
  under each strategy side by side (base64 PNGs, or the reason one does not apply);
* ``GET /api/walk?seed=S&set=NAME&index=K&kind=linear|dp|great-circle&steps=9`` — frames;
* ``POST /api/invert?space=&regularizer=&steps=`` (body: a PNG/JPEG) — an inversion job;
  ``GET /api/job/ID`` its progress and result; ``GET /api/job/ID/latent.npz`` the latent;
  ``POST /api/latent`` (body: such an .npz) — a latent back in;
* ``GET /report/NAME`` — the files of a report directory given at start (listed then; a request
  never names a path on disk).

Built on the standard library's threaded HTTP server: no web framework to install or keep in
step with, and every byte that crosses the socket is in this package: ``wire`` (limits, parameter checks,
encoding), ``explorer`` (the state), ``jobs`` (inversion jobs), ``server`` (HTTP). Bounded everywhere: request
bodies (``MAX_UPLOAD``), decoded pixels (the image reader's limits), the job queue (429 when
full), the render cache; uploads live only in a temporary directory removed at exit.
"""
