using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Tokenizers;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// A model whose "forward pass" returns scripted logits: step i puts all weight on script[i], so a
/// greedy sampler reproduces the script. Records what it was fed, and throws like a real session
/// would when the context overflows.
/// </summary>
internal sealed class FakeLlamaModel(int vocabSize, int maxContext, IReadOnlyList<int> script) : ILlamaModel
{
    public LlamaModelShape Shape { get; } = new(
        HiddenSize: 8, IntermediateSize: 16, LayerCount: 1, HeadCount: 1, KvHeadCount: 1, HeadDim: 8,
        VocabSize: vocabSize, MaxContext: maxContext, RmsNormEps: 1e-5f, RopeTheta: 10000f,
        TiedEmbeddings: true, BosTokenId: 1, EosTokenIds: [2]);

    public IReadOnlyList<int> Script { get; } = script;

    /// <summary>How long each Forward takes: a generation that is still running when a test acts on it.</summary>
    public TimeSpan StepDelay { get; init; }

    public ILlamaSession CreateSession() => new FakeSession(this);

    public void Dispose() { }
}

internal sealed class FakeSession(FakeLlamaModel model, SessionOptions? options = null) : ILlamaSession
{
    private readonly float[] _logits = new float[model.Shape.VocabSize];
    private int _step;

    public ILlamaModel Model => model;

    public int Position => CacheIds.Count;

    /// <summary>Every Forward call's tokens, in order.</summary>
    public List<int[]> Calls { get; } = [];

    /// <summary>The ids whose keys and values a real session's cache would hold, shifts included.</summary>
    public List<int> CacheIds { get; } = [];

    public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens)
    {
        int max = model.Shape.MaxContext;
        if (!tokens.IsEmpty && Position + tokens.Length > max && Options.Overflow == ContextOverflow.Shift && tokens.Length <= max - Options.KeepTokens)
            CacheIds.RemoveRange(Options.KeepTokens, Math.Max((Position - Options.KeepTokens) / 2, tokens.Length - (max - Position))); // as LlamaSession shifts
        if (tokens.IsEmpty || Position + tokens.Length > max)
            throw new InvalidOperationException($"{tokens.Length} tokens at position {Position} do not fit in {max}.");
        if (model.StepDelay > TimeSpan.Zero)
            System.Threading.Thread.Sleep(model.StepDelay);
        Calls.Add(tokens.ToArray());
        CacheIds.AddRange(tokens.ToArray());
        Array.Clear(_logits);
        _logits[model.Script[_step++]] = 10f;
        return _logits;
    }

    public ReadOnlySpan<float> Forward(int token) => Forward(new[] { token });

    public SessionOptions Options { get; } = options ?? new();

    public ReadOnlySpan<float> Logits => _logits;

    public void Save(System.IO.Stream stream) => throw new NotSupportedException("a scripted session has no state to save");

    public void Restore(System.IO.Stream stream) => throw new NotSupportedException("a scripted session has no state to restore");

    public void Reset()
    {
        CacheIds.Clear();
        _step = 0;
        Calls.Clear();
    }

    public void Dispose() { }
}

/// <summary>Text generators over a <see cref="FakeLlamaModel"/> that plays back scripted tokens.</summary>
internal static class ScriptedGeneration
{
    public static readonly Tokenizer Tokenizer = LlamaTokenizers.Load(TestPaths.Stories260KHf);

    public static readonly GenerationOptions Greedy = new() { Sampling = new SamplingOptions { Temperature = 0f } };

    /// <summary>The ids the tokenizer gives <paramref name="text"/> after those of <paramref name="prompt"/>.</summary>
    public static int[] Continuation(string prompt, string text)
    {
        IReadOnlyList<int> promptIds = Tokenizer.EncodeToIds(prompt);
        IReadOnlyList<int> ids = Tokenizer.EncodeToIds(text);
        Assert.Equal(promptIds, ids.Take(promptIds.Count));
        return ids.Skip(promptIds.Count).ToArray();
    }

    /// <summary>A generator whose session answers with <paramref name="script"/>, one token per step.</summary>
    public static (TextGenerator Generator, FakeSession Session) Create(IReadOnlyList<int> script, int maxContext = 512, SessionOptions? options = null)
    {
        var model = new FakeLlamaModel(512, maxContext, script);
        var session = new FakeSession(model, options);
        return (new TextGenerator(session, Tokenizer), session);
    }
}
