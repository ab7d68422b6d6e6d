package schemas

import "net/http"

// ErrCode is a documented protocol error code (the errCode of an error frame or HTTP error body).
type ErrCode string

const (
	CodeBadRequest   ErrCode = "bad_request"
	CodeUnauthorized ErrCode = "unauthorized"
	CodeForbidden    ErrCode = "forbidden"
	CodeNotFound     ErrCode = "not_found"
	CodeConflict     ErrCode = "conflict"
	CodeTooLarge     ErrCode = "too_large"
	CodeRateLimited  ErrCode = "rate_limited"
	CodeUnavailable  ErrCode = "unavailable"
	CodeInternal     ErrCode = "internal"
)

// ErrCodes lists every code, for metrics and documentation.
var ErrCodes = []ErrCode{CodeBadRequest, CodeUnauthorized, CodeForbidden, CodeNotFound, CodeConflict,
	CodeTooLarge, CodeRateLimited, CodeUnavailable, CodeInternal}

// HTTPStatus is the HTTP status that goes with an error code.
func (c ErrCode) HTTPStatus() int {
	switch c {
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeConflict:
		return http.StatusConflict
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Error is a protocol error: a code a client can act on and a message for people. It is what every
// handler returns for a client mistake; anything else becomes "internal" with a generic message.
type Error struct {
	Code ErrCode
	Msg  string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Msg }

// Errorf returns a protocol error.
func Errorf(code ErrCode, msg string) *Error { return &Error{Code: code, Msg: msg} }
