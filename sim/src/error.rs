//! Every way the simulated API says no, and the one place that turns it into FastAPI's answer:
//! `{"detail": "..."}` for the handler's own errors, `{"detail": [...]}` for validation.

use http::StatusCode;

use crate::pydantic::{detail_body, FieldError};
use crate::response::{detail, json, SimResponse};

#[derive(Debug)]
pub(crate) enum ApiError {
    /// No credential at all (FastAPI's security dependency).
    NotAuthenticated,
    /// A credential no tenant has.
    InvalidKey,
    /// Unknown, another tenant's, or outside the scope given: e.g. "Job not found".
    NotFound(&'static str),
    MethodNotAllowed,
    /// The handler's own refusal of a valid-looking request, e.g. a bad page token.
    BadRequest(&'static str),
    /// Query or body validation: every invalid field, in FastAPI's order.
    Validation(Vec<FieldError>),
}

impl ApiError {
    pub(crate) fn into_response(self) -> SimResponse {
        match self {
            ApiError::NotAuthenticated => detail(StatusCode::UNAUTHORIZED, "Not authenticated"),
            ApiError::InvalidKey => detail(StatusCode::UNAUTHORIZED, "Invalid API key"),
            ApiError::NotFound(what) => detail(StatusCode::NOT_FOUND, what),
            ApiError::MethodNotAllowed => {
                detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
            }
            ApiError::BadRequest(why) => detail(StatusCode::BAD_REQUEST, why),
            ApiError::Validation(errors) => {
                json(StatusCode::UNPROCESSABLE_ENTITY, detail_body(&errors))
            }
        }
    }
}

impl From<Vec<FieldError>> for ApiError {
    fn from(errors: Vec<FieldError>) -> Self {
        ApiError::Validation(errors)
    }
}

/// What a route handler returns: its answer, or why not.
pub(crate) type ApiResult = Result<SimResponse, ApiError>;
