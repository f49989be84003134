"""One module per page; each calls ``dash.register_page`` and defines ``layout(**kwargs)`` and
``register_callbacks(app)``, which :func:`dashboard.app.create_app` calls for the app it builds."""
