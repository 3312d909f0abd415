//! The scenario every binding runs against the real library: stream a completion, cancel a
//! request midway, read errors from bad calls, round-trip text through the tokenizer.
mod common;

use std::time::Duration;

use minimax::{
    Code, Context, ContextOption, ContextOptions, Event, EventType, FinishReason, LayerKind, Model,
    ModelOption, ModelOptions, Request, RequestOption, TokenizeFlags,
};

const PROMPT: &str = "Once upon a time";

fn request(max_tokens: i64) -> Request {
    let mut r = Request::new().unwrap();
    // ignore_eos makes the length deterministic: the request ends at max_tokens.
    r.text(PROMPT).unwrap().max_tokens(max_tokens).unwrap().ignore_eos(true).unwrap();
    r
}

#[test]
fn handles_are_thread_safe_where_the_abi_allows() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Model>();
    send_sync::<Context>();
    send_sync::<Event>();
    send::<Request>();
    send::<ModelOptions>();
    send::<ContextOptions>();
    // (Request not being Sync is checked by a compile_fail doc test on Request.)
}

#[test]
fn version_and_model_info() {
    assert_eq!(minimax::abi_version(), minimax::sys::MMX_ABI_VERSION);
    assert!(!minimax::version().is_empty());
    let model = common::load_model();
    let info = model.info().unwrap();
    assert_eq!(info.backend, "cpu");
    assert!(info.vocab_size > 0 && info.num_layers > 0 && info.parameter_count > 0);
    assert!(!info.fingerprint.is_empty());
    let softmax =
        (0..info.num_layers).filter(|&l| model.layer_kind(l).unwrap() == LayerKind::Softmax).count();
    assert_eq!(softmax as i32, info.num_softmax_layers);
    assert_eq!(model.layer_kind(info.num_layers).unwrap_err().code, Code::InvalidArgument);
    let estimate = model.estimate_memory(None).unwrap();
    assert!(estimate.total_bytes >= estimate.weight_bytes && estimate.weight_bytes > 0);
}

#[test]
fn streams_a_completion() {
    let model = common::load_model();
    let ctx = Context::new(&model, None).unwrap();
    let id = ctx.submit(&request(8)).unwrap();

    let (mut tokens, mut text, mut finish) = (0, String::new(), None);
    for event in ctx.events(id) {
        let event = event.unwrap();
        assert_eq!(event.request_id(), id);
        text.push_str(event.text());
        match event.kind() {
            EventType::Token => {
                let t = event.token().expect("a token event carries a token");
                assert!(t >= 0 && t < model.info().unwrap().vocab_size);
                assert!(event.logprob() <= 0.0);
                tokens += 1;
            }
            EventType::Finished => {
                let prompt_len = model.tokenize(PROMPT, TokenizeFlags::DEFAULT).unwrap().len() as i64;
                assert_eq!(event.counts().unwrap(), (prompt_len, tokens));
                assert!(event.error().is_none());
                finish = event.finish_reason();
            }
            _ => {}
        }
    }
    assert_eq!(finish, Some(FinishReason::Length));
    assert_eq!(tokens, 8);
    assert!(!text.is_empty());
    // The final event was taken: the id is gone.
    assert_eq!(ctx.next_event(id, Some(Duration::ZERO)).unwrap_err().code, Code::NotFound);
    let stats = ctx.stats().unwrap();
    assert_eq!((stats.submitted_requests, stats.finished_requests), (1, 1));
    assert!(stats.generated_tokens >= 8);
}

#[test]
fn cancels_a_request_midway() {
    let model = common::load_model();
    let ctx = Context::new(&model, None).unwrap();
    const MAX: i64 = 4000;
    let id = ctx.submit(&request(MAX)).unwrap();

    let mut tokens = 0;
    let mut finished = None;
    for event in ctx.events(id) {
        let event = event.unwrap();
        if event.kind() == EventType::Token {
            tokens += 1;
            if tokens == 1 {
                ctx.cancel(id).unwrap();
            }
        }
        if event.kind() == EventType::Finished {
            assert_eq!(event.counts().unwrap().1, tokens);
            finished = event.finish_reason();
        }
    }
    assert_eq!(finished, Some(FinishReason::Cancelled));
    assert!((1..MAX).contains(&tokens), "{} tokens", tokens);
    assert_eq!(ctx.cancel(id).unwrap_err().code, Code::NotFound);
}

#[test]
fn reports_errors_with_codes_and_messages() {
    let missing = std::env::temp_dir().join("minimax-rust-test-no-such-model");
    let err = Model::load(&missing, None).err().expect("loading a missing directory succeeded");
    assert_eq!(err.code, Code::NotFound);
    assert!(err.message.contains(missing.to_str().unwrap()), "message: {}", err.message);
    assert!(err.to_string().starts_with("not found: "), "{}", err);

    // Unknown keys answer Unsupported, so that hosts can probe features.
    let mut req = Request::new().unwrap();
    assert_eq!(req.set_int(RequestOption(999), 1).err().unwrap().code, Code::Unsupported);
    assert_eq!(req.set_double(RequestOption(998), 1.0).err().unwrap().code, Code::Unsupported);
    assert_eq!(
        ModelOptions::new().unwrap().set_int(ModelOption(999), 1).err().unwrap().code,
        Code::Unsupported
    );
    assert_eq!(
        ContextOptions::new().unwrap().set_int(ContextOption(999), 1).err().unwrap().code,
        Code::Unsupported
    );
    assert_eq!(req.max_tokens(-1).err().unwrap().code, Code::InvalidArgument);

    let model = common::load_model();
    let ctx = Context::new(&model, None).unwrap();
    // An empty prompt is refused at submit.
    assert_eq!(ctx.submit(&req).unwrap_err().code, Code::InvalidArgument);
    assert_eq!(
        ctx.next_event(minimax::RequestId(12345), Some(Duration::ZERO)).unwrap_err().code,
        Code::NotFound
    );
}

#[test]
fn tokenize_round_trip() {
    let model = common::load_model();
    let text = "Hello world, tokens and more tokens: 12345!";
    let tokens = model.tokenize(text, TokenizeFlags::DEFAULT).unwrap();
    assert!(!tokens.is_empty());
    let vocab = model.info().unwrap().vocab_size;
    assert!(tokens.iter().all(|&t| t >= 0 && t < vocab));
    assert_eq!(model.detokenize(&tokens).unwrap(), text);
    // Longer than the first buffer guess of detokenize: exercises the BUFFER_TOO_SMALL retry.
    let long = "abcdefghij".repeat(300);
    assert_eq!(model.detokenize(&model.tokenize(&long, TokenizeFlags::DEFAULT).unwrap()).unwrap(), long);
    assert_eq!(model.detokenize(&[vocab]).unwrap_err().code, Code::InvalidArgument);
}

#[test]
fn load_progress_can_abort() {
    let mut calls = 0;
    let model = Model::load_with_progress(common::model_dir(), None, |fraction, _stage| {
        assert!((0.0..=1.0).contains(&fraction));
        calls += 1;
        true
    });
    assert!(model.is_ok() && calls > 0);
    let aborted = Model::load_with_progress(common::model_dir(), None, |_, _| false);
    assert_eq!(aborted.err().unwrap().code, Code::Cancelled);
}

#[test]
fn serves_requests_from_several_threads() {
    let model = common::load_model();
    let ctx = Context::new(&model, None).unwrap();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let id = ctx.submit(&request(4)).unwrap();
                    let events: Vec<Event> = ctx.events(id).map(Result::unwrap).collect();
                    let last = events.last().unwrap();
                    (events.iter().filter(|e| e.kind() == EventType::Token).count(), last.finish_reason())
                })
            })
            .collect();
        for w in workers {
            assert_eq!(w.join().unwrap(), (4, Some(FinishReason::Length)));
        }
    });
    assert_eq!(ctx.stats().unwrap().finished_requests, 4);
}

#[test]
fn prefixes_are_made_saved_and_reused() {
    let model = common::load_model();
    let ctx = Context::new(&model, None).unwrap();
    let mut make = Request::new().unwrap();
    make.text(PROMPT).unwrap().set_int(RequestOption::MAKE_PREFIX, 1).unwrap();
    let id = ctx.submit(&make).unwrap();
    let last = ctx.events(id).last().unwrap().unwrap();
    assert_eq!(last.finish_reason(), Some(FinishReason::PrefixReady));
    let prefix = last.prefix().unwrap();
    let prompt_len = model.tokenize(PROMPT, TokenizeFlags::DEFAULT).unwrap().len() as i64;
    assert_eq!(prefix.token_count().unwrap(), prompt_len);
    assert!(prefix.state_bytes().unwrap() > 0);

    let file = std::env::temp_dir().join(format!("minimax-rust-test-{}.prefix", std::process::id()));
    prefix.save(&file).unwrap();
    let loaded = ctx.load_prefix(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(loaded.token_count().unwrap(), prompt_len);

    let mut ask = request(3);
    ask.prefix(&loaded).unwrap();
    drop(loaded); // the request holds its own reference
    let id = ctx.submit(&ask).unwrap();
    let last = ctx.events(id).last().unwrap().unwrap();
    assert_eq!(last.finish_reason(), Some(FinishReason::Length));
    assert_eq!(last.counts().unwrap().1, 3);
}
