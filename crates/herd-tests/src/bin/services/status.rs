pub async fn primary(_s: &str) {}
pub async fn worker(_s: &str) {}
