package v1

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrInvalidToken is returned when a user value cannot stand in a subject.
var ErrInvalidToken = errors.New("invalid subject token")

// Stable error codes carried in Error.ErrorCode.
const (
	CodeBadRequest     = "bad_request"
	CodeInvalidToken   = "invalid_token"
	CodeSchemaInvalid  = "schema_invalid"
	CodeNotFound       = "not_found"
	CodeNoPlacement    = "no_placement"
	CodeBidExpired     = "bid_expired"
	CodeConflict       = "conflict"
	CodeUnavailable    = "unavailable"
	CodeLameduck       = "lameduck"
	CodeStartFailed    = "start_failed"
	CodeTimeout        = "timeout"
	CodeForbidden      = "forbidden"
	CodeTooLarge       = "too_large"
	CodeNotImplemented = "not_implemented"
	// CodeStorageFull: JetStream has no room left for the record (free space or raise
	// the account's or server's JetStream storage limits).
	CodeStorageFull = "storage_full"
	// CodeStorageUnavailable: the state store did not answer (no quorum, a leader
	// election that outlasted the retries, JetStream down).
	CodeStorageUnavailable = "storage_unavailable"
	CodeInternal           = "internal"
	// CodeQuotaExceeded: the start would take the namespace past a quota the operator set
	// (nexd --namespace-quota).
	CodeQuotaExceeded = "quota_exceeded"
)

// Statuses pairs each error code with the HTTP-like status it travels with. A start that
// failed because of its request (a workdir that is not a directory, an artifact that does
// not fetch) is start_failed with 400; one that failed on the node is start_failed with 500.
var Statuses = map[string][]int{
	CodeBadRequest:         {400},
	CodeInvalidToken:       {400},
	CodeSchemaInvalid:      {400},
	CodeStartFailed:        {400, 500},
	CodeForbidden:          {403},
	CodeQuotaExceeded:      {403},
	CodeNotFound:           {404},
	CodeConflict:           {409},
	CodeBidExpired:         {410},
	CodeTooLarge:           {413},
	CodeInternal:           {500},
	CodeNotImplemented:     {501},
	CodeUnavailable:        {503},
	CodeLameduck:           {503},
	CodeNoPlacement:        {503},
	CodeTimeout:            {504},
	CodeStorageFull:        {507},
	CodeStorageUnavailable: {503},
}

// Error is the JSON body of every error reply; the same values travel in the
// Nats-Service-Error and Nats-Service-Error-Code headers.
type Error struct {
	Code      int    `json:"code"`
	ErrorCode string `json:"error_code"`
	Message   string `json:"message"`
	Details   any    `json:"details,omitempty"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.ErrorCode
	}
	return e.Message
}

// Is lets errors.Is match on the stable error code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.ErrorCode == e.ErrorCode
}

// HTTPCode is Code as the string carried in Nats-Service-Error-Code.
func (e *Error) HTTPCode() string { return strconv.Itoa(e.Code) }

// NewError builds an Error with a formatted message.
func NewError(code int, errorCode, format string, args ...any) *Error {
	return &Error{Code: code, ErrorCode: errorCode, Message: fmt.Sprintf(format, args...)}
}

// Errorf builds an Error of the stable error code code, with the status the code
// travels with (the first of Statuses; start_failed is 400, a request the node could not
// carry out; use NewError for a start_failed that is the node's fault, 500).
func Errorf(code, format string, args ...any) *Error {
	status := 500
	if s, ok := Statuses[code]; ok {
		status = s[0]
	}
	return NewError(status, code, format, args...)
}

// IsCode tells whether err is (or wraps) an Error with the stable error code code. It is
// the one way to ask what kind of error a reply was.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.ErrorCode == code
}

// IsNotFound tells whether err says that what was asked for does not exist.
func IsNotFound(err error) bool { return IsCode(err, CodeNotFound) }

// NotFound is a 404 error naming what was missing.
func NotFound(format string, args ...any) *Error {
	return Errorf(CodeNotFound, format, args...)
}

// BadRequest is a 400 error.
func BadRequest(format string, args ...any) *Error {
	return Errorf(CodeBadRequest, format, args...)
}

// AsError converts any error into an *Error, mapping invalid tokens to 400. No error
// gives an Error with code 0.
func AsError(err error) *Error {
	if err == nil {
		return &Error{}
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, ErrInvalidToken) {
		return Errorf(CodeInvalidToken, "%s", err.Error())
	}
	return Errorf(CodeInternal, "%s", err.Error())
}
