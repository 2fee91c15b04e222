//! The API reference as the `/api` page shows it: the OpenAPI document
//! flattened to what a reader needs (the server builds it from the document).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiReference {
    pub title: String,
    pub version: String,
    pub description: String,
    pub operations: Vec<ApiOperation>,
    pub schemas: Vec<ApiSchema>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiOperation {
    pub method: String,
    pub path: String,
    pub tag: String,
    pub summary: String,
    /// The rest of the description, including the role it needs.
    pub description: String,
    pub parameters: Vec<ApiField>,
    /// `application/json: ReportRequest`, or empty.
    pub body: String,
    pub responses: Vec<ApiResponse>,
}

/// A parameter or a schema's property.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiField {
    pub name: String,
    /// `path`, `query`, or empty for a property.
    pub location: String,
    pub type_name: String,
    pub required: bool,
    pub description: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiResponse {
    pub status: String,
    pub description: String,
    /// The body's type, empty when there is none.
    pub body: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiSchema {
    pub name: String,
    pub description: String,
    pub fields: Vec<ApiField>,
}
