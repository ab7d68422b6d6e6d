package gateway

// indexPage is served at / until the web client lands: it says what this server is and where its
// API is.
const indexPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>eventchat</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}
code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}</style></head>
<body><h1>eventchat gateway</h1>
<p>The chat server is running. Clients connect over WebSocket at <code>/v1/ws</code>; accounts are made with
<code>POST /v1/register</code> and <code>POST /v1/login</code>; history is at
<code>GET /v1/conversations/{conv}/messages</code>. See <code>docs/protocol.md</code>.</p>
<p>Health: <a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a> · <a href="/metrics">/metrics</a></p>
</body></html>
`
