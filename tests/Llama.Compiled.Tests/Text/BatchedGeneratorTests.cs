using System;
using System.Collections.Generic;
using System.Diagnostics.Metrics;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// <see cref="BatchedGenerator"/> on the real stories260K: every generation streams and stops exactly as a
/// <see cref="TextGenerator"/> of its own would; the queue, cancellation and draining free what they should.
/// </summary>
public sealed class BatchedGeneratorTests : IDisposable
{
    private static readonly Tokenizer Tokenizer = LlamaTokenizers.Load(TestPaths.Stories260KHf);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly Stories260K _model = Stories260K.Load(TestPaths.Stories260KHf);

    public void Dispose() => _model.Dispose();

    private static readonly string[] Prompts =
    [
        "Once upon a time", "Lily wanted a big red ball", "The dog ran", "Tim and Sam went to the park to play", "One day",
        "The sun was hot and the bird", "A little girl named Sue had a cat", "Bob",
    ];

    /// <summary>A model whose generations never end by themselves (a scripted token every millisecond, no end-of-sequence).</summary>
    private static FakeLlamaModel Endless() => new(512, 100_000, Enumerable.Repeat(5, 100_000).ToArray()) { StepDelay = TimeSpan.FromMilliseconds(1) };

    private static readonly GenerationOptions Unlimited = new() { MaxNewTokens = 100_000, Sampling = new SamplingOptions { Temperature = 0f } };

    /// <summary>What a generator of its own gives: the reference for each batched generation.</summary>
    private GenerationResult Alone(string prompt, GenerationOptions options)
    {
        using var session = _model.CreateSession(new SessionOptions { Threads = 1 });
        return new TextGenerator(session, Tokenizer).GenerateText(prompt, options);
    }

    private static async Task<(string Streamed, GenerationResult Result)> Collect(BatchedGeneration run)
    {
        var text = new StringBuilder();
        await foreach (string chunk in run.ReadChunksAsync())
            text.Append(chunk);
        return (text.ToString(), await run.Completion);
    }

    [Theory]
    [InlineData(1, 64)]
    [InlineData(4, 64)]
    [InlineData(8, 8)]  // prompts prefill a few tokens per pass beside the decoding sequences
    [InlineData(3, 16)] // more generations than sequences: the rest wait in the queue
    public async Task EveryGenerationEqualsItsGenerationAlone(int maxSequences, int maxBatchTokens)
    {
        using var generator = new BatchedGenerator(_model, Tokenizer, new BatchedGeneratorOptions { MaxSequences = maxSequences, MaxBatchTokens = maxBatchTokens, Threads = 2 });
        GenerationOptions[] options = Prompts.Select((_, i) => new GenerationOptions
        {
            MaxNewTokens = 20 + 9 * i,
            Sampling = i % 2 == 0 ? new SamplingOptions { Temperature = 0f } : new SamplingOptions { Temperature = 0.8f, TopP = 0.9f, Seed = (ulong)i },
            StopSequences = i == 3 ? ["park"] : [],
        }).ToArray();

        BatchedGeneration[] runs = Prompts.Select((p, i) => generator.Start(generator.EncodePrompt(p), options[i])).ToArray();
        var results = await Task.WhenAll(runs.Select(Collect)).WaitAsync(Timeout);

        for (int i = 0; i < Prompts.Length; i++)
        {
            GenerationResult alone = Alone(Prompts[i], options[i]);
            Assert.Equal(alone.Text, results[i].Streamed);
            Assert.Equal(alone.Text, results[i].Result.Text);
            Assert.Equal(alone.FinishReason, results[i].Result.FinishReason);
            Assert.Equal(alone.PromptTokens, results[i].Result.PromptTokens);
            Assert.Equal(alone.GeneratedTokens, results[i].Result.GeneratedTokens);
            if (options[i].Sampling.Seed is not null)
                Assert.Equal(alone.Stats.Seed, results[i].Result.Stats.Seed);
        }
        Assert.Contains(results, r => r.Result.FinishReason == StopReason.MaxNewTokens);
        Assert.Equal(0, generator.ActiveSequences);
        Assert.Equal(0, generator.QueueLength);
    }

    [Fact]
    public async Task AGenerationThatStartsLaterJoinsTheRunningOnes()
    {
        using var generator = new BatchedGenerator(_model, Tokenizer, new BatchedGeneratorOptions { MaxSequences = 4, Threads = 1 });
        var greedy = new GenerationOptions { MaxNewTokens = 200, Sampling = new SamplingOptions { Temperature = 0f } };
        BatchedGeneration first = generator.Start(generator.EncodePrompt(Prompts[0]), greedy);
        await using IAsyncEnumerator<string> reader = first.ReadChunksAsync().GetAsyncEnumerator();
        Assert.True(await reader.MoveNextAsync()); // the first is decoding when the second arrives
        BatchedGeneration second = generator.Start(generator.EncodePrompt(Prompts[1]), greedy);

        (string _, GenerationResult secondResult) = await Collect(second).WaitAsync(Timeout);
        GenerationResult firstResult = await first.Completion.WaitAsync(Timeout);
        Assert.Equal(Alone(Prompts[1], greedy).Text, secondResult.Text);
        Assert.Equal(Alone(Prompts[0], greedy).Text, firstResult.Text);
    }

    [Fact]
    public async Task AFullQueueRefusesAndCancelledGenerationsFreeTheirSequence()
    {
        using var generator = new BatchedGenerator(Endless(), Tokenizer, new BatchedGeneratorOptions { MaxSequences = 1, MaxQueue = 1, MaxBatchTokens = 8, Threads = 1 });
        GenerationOptions endless = Unlimited;
        int[] prompt = generator.EncodePrompt("Once");
        using var cancelRunning = new CancellationTokenSource();
        BatchedGeneration running = generator.Start(prompt, endless, cancelRunning.Token);
        await WaitUntil(() => generator.ActiveSequences == 1);
        BatchedGeneration waiting = generator.Start(prompt, endless);
        Assert.Throws<GenerationQueueFullException>(() => generator.Start(prompt, endless));
        Assert.Equal(1, generator.QueueLength);

        // The waiting one leaves the queue at once when cancelled, though no sequence is free.
        waiting.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.Completion.WaitAsync(Timeout));
        Assert.Equal(0, generator.QueueLength);

        cancelRunning.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running.Completion.WaitAsync(Timeout));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (string _ in running.ReadChunksAsync())
            {
            }
        });
        await WaitUntil(() => generator.ActiveSequences == 0);

        // The sequence serves the next generation from a clean cache.
        GenerationResult next = await generator.Start(prompt, Unlimited with { MaxNewTokens = 3 }).Completion.WaitAsync(Timeout);
        Assert.Equal(3, next.GeneratedTokens);
        Assert.Equal(StopReason.MaxNewTokens, next.FinishReason);
    }

    [Fact]
    public async Task DrainWaitsForRunningGenerationsAndCancelsThemWhenItsTokenFires()
    {
        using var generator = new BatchedGenerator(_model, Tokenizer, new BatchedGeneratorOptions { MaxSequences = 2, Threads = 1 });
        var shortRun = new GenerationOptions { MaxNewTokens = 40, Sampling = new SamplingOptions { Temperature = 0f } };
        BatchedGeneration finishing = generator.Start(generator.EncodePrompt("Once"), shortRun);
        generator.StopAccepting();
        Assert.Throws<InvalidOperationException>(() => generator.Start(generator.EncodePrompt("Once"), shortRun));
        await generator.DrainAsync().WaitAsync(Timeout);
        Assert.True(finishing.Completion.IsCompletedSuccessfully);

        using var other = new BatchedGenerator(Endless(), Tokenizer, new BatchedGeneratorOptions { MaxSequences = 2, Threads = 1 });
        GenerationOptions endless = Unlimited;
        BatchedGeneration[] runs = [other.Start(other.EncodePrompt("Once"), endless), other.Start(other.EncodePrompt("Lily"), endless), other.Start(other.EncodePrompt("Tom"), endless)];
        other.StopAccepting();
        using var grace = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await other.DrainAsync(grace.Token).WaitAsync(Timeout);
        foreach (BatchedGeneration run in runs)
            Assert.True(run.Completion.IsCanceled);
        Assert.Equal(0, other.ActiveSequences);
        Assert.Equal(0, other.QueueLength);
    }

    [Fact]
    public async Task BadRequestsThrowBeforeTheyAreQueued()
    {
        using var generator = new BatchedGenerator(_model, Tokenizer, new BatchedGeneratorOptions { MaxSequences = 1, Threads = 1 });
        Assert.Throws<ArgumentException>(() => generator.Start([]));
        Assert.Throws<ArgumentException>(() => generator.Start([1, 100_000]));
        Assert.Throws<ArgumentException>(() => generator.Start(Enumerable.Repeat(1, Stories260K.MaxContext).ToArray()));
        Assert.Throws<ArgumentOutOfRangeException>(() => generator.Start([1], new GenerationOptions { MaxNewTokens = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => generator.Start([1], new GenerationOptions { Sampling = new SamplingOptions { TopP = 2f } }));
        Assert.Equal(0, generator.QueueLength);
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchedGenerator(_model, Tokenizer, new BatchedGeneratorOptions { MaxSequences = 8, MaxBatchTokens = 4 }));

        // A prompt that only fills the cache (no token asked for) is fine.
        GenerationResult prefillOnly = await generator.Start(generator.EncodePrompt("Once upon a time"), new GenerationOptions { MaxNewTokens = 0 }).Completion.WaitAsync(Timeout);
        Assert.Equal(StopReason.MaxNewTokens, prefillOnly.FinishReason);
        Assert.Equal(0, prefillOnly.GeneratedTokens);
    }

    [Fact]
    public async Task AGenerationStopsWhereItsGenerationAloneStopsAtTheEndOfTheContext()
    {
        using var generator = new BatchedGenerator(_model, Tokenizer, new BatchedGeneratorOptions { MaxSequences = 2, Threads = 1 });
        var sampled = new GenerationOptions { MaxNewTokens = 100_000, Sampling = new SamplingOptions { Temperature = 1f, Seed = 5 } };
        int[] prompt = [1, .. Enumerable.Repeat(Tokenizer.EncodeToIds("Once")[^1], Stories260K.MaxContext - 12)];
        GenerationResult result = await generator.Start(prompt, sampled).Completion.WaitAsync(Timeout);

        using var session = _model.CreateSession(new SessionOptions { Threads = 1 });
        var alone = new TextGenerator(session, Tokenizer);
        foreach (string _ in alone.Generate(prompt, sampled))
        {
        }
        Assert.Equal(alone.LastResult!.Text, result.Text);
        Assert.Equal(alone.LastResult.FinishReason, result.FinishReason);
        Assert.Equal(alone.LastResult.GeneratedTokens, result.GeneratedTokens);
        Assert.True(result.PromptTokens + result.GeneratedTokens <= Stories260K.MaxContext + 1);
    }

    [Fact]
    public async Task AChatClientOnTheGeneratorAnswersAsOneWithASessionOfItsOwn()
    {
        var greedy = new GenerationOptions { MaxNewTokens = 40, Sampling = new SamplingOptions { Temperature = 0f } };
        using var generator = new BatchedGenerator(_model, Tokenizer, new BatchedGeneratorOptions { MaxSequences = 4, Threads = 2 });
        using LlamaChatClient batched = generator.AsChatClient(ChatTemplate.Plain, greedy);
        using LlamaChatClient alone = _model.AsChatClient(Tokenizer, ChatTemplate.Plain, greedy);
        string[] questions = ["Tell me about a cat.", "Where is the ball?", "Who is Lily?", "What did the dog do?"];

        ChatResponse[] answers = await Task.WhenAll(questions.Select(q => batched.GetResponseAsync(q))).WaitAsync(Timeout);
        for (int i = 0; i < questions.Length; i++)
        {
            ChatResponse expected = await alone.GetResponseAsync(questions[i]);
            Assert.Equal(expected.Text, answers[i].Text);
            Assert.Equal(expected.FinishReason, answers[i].FinishReason);
            Assert.Equal(expected.Usage!.InputTokenCount, answers[i].Usage!.InputTokenCount);
            Assert.Equal(expected.Usage.OutputTokenCount, answers[i].Usage!.OutputTokenCount);
        }

        var streamed = new StringBuilder();
        await foreach (ChatResponseUpdate update in batched.GetStreamingResponseAsync(questions[0]))
            streamed.Append(update.Text);
        Assert.Equal(answers[0].Text, streamed.ToString());

        // A reader that stops early frees its sequence.
        await foreach (ChatResponseUpdate _ in batched.GetStreamingResponseAsync(questions[1], new ChatOptions { MaxOutputTokens = 100_000 }))
            break;
        await WaitUntil(() => generator.ActiveSequences == 0);
    }

    [Fact]
    public async Task TheMeterReportsTokensQueueAndTimeToFirstToken()
    {
        // The generator's meter comes from the factory (as dependency injection gives it): other tests' generators are not heard.
        using var meters = new TestMeterFactory();
        var measurements = new Dictionary<string, double>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (meters.Created.Contains(instrument.Meter))
                l.EnableMeasurementEvents(instrument);
        };
        void Record(Instrument instrument, double value)
        {
            lock (measurements)
                measurements[instrument.Name] = measurements.GetValueOrDefault(instrument.Name) + value;
        }
        listener.SetMeasurementEventCallback<long>((i, v, _, _) => Record(i, v));
        listener.SetMeasurementEventCallback<double>((i, v, _, _) => Record(i, v));
        listener.SetMeasurementEventCallback<int>((i, v, _, _) => Record(i, v));
        listener.Start();

        using var generator = new BatchedGenerator(_model, Tokenizer, new BatchedGeneratorOptions { MaxSequences = 2, Threads = 1, MeterFactory = meters });
        Assert.Equal(BatchedGenerator.MeterName, Assert.Single(meters.Created).Name);
        var greedy = new GenerationOptions { MaxNewTokens = 10, Sampling = new SamplingOptions { Temperature = 0f } };
        GenerationResult[] results = await Task.WhenAll(
            generator.Start(generator.EncodePrompt("Once upon a time"), greedy).Completion,
            generator.Start(generator.EncodePrompt("Lily"), greedy).Completion).WaitAsync(Timeout);
        listener.RecordObservableInstruments();

        lock (measurements)
        {
            Assert.Equal(results.Sum(r => r.PromptTokens + r.GeneratedTokens), measurements["llama_compiled.tokens"]);
            Assert.True(measurements["gen_ai.server.time_to_first_token"] > 0);
            Assert.Equal(2, measurements["llama_compiled.generations"]);
            Assert.Equal(0, measurements["llama_compiled.queue.length"]);
            Assert.Equal(0, measurements["llama_compiled.sequences.active"]);
        }
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(5);
        }
    }

    private sealed class TestMeterFactory : IMeterFactory
    {
        public List<Meter> Created { get; } = [];

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(options);
            Created.Add(meter);
            return meter;
        }

        public void Dispose()
        {
            foreach (Meter meter in Created)
                meter.Dispose();
        }
    }
}
