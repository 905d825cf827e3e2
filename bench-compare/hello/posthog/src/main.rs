fn main() {
    let client = posthog_rs::client("phc_hello");
    let mut event = posthog_rs::Event::new_anon("greeted");
    event.insert_prop("people", 1).expect("a number serializes");
    client.capture(event);
    println!("hello");
}
