package transport

import _ "embed"

// openAPIDoc is the OpenAPI 3.1 description of the whole HTTP API, served
// at GET /openapi.json; openapi_test.go checks every answer of the
// contract tests against it.
//
//go:embed openapi.json
var openAPIDoc []byte
