use corekv::client::Client;
use std::time::Duration;
fn main() {
    let mut c = Client::connect(&["127.0.0.1:24001".to_string()], Duration::from_secs(2)).unwrap();
    println!("{:?}", c.put(b"foo", b"bar"));
    println!("{:?}", c.get(b"foo"));
    println!("{:?}", c.status());
    let t = std::time::Instant::now();
    for i in 0..1000 {
        c.put(format!("k{i}").as_bytes(), b"v").unwrap();
    }
    println!("1000 puts {:?}", t.elapsed());
}
