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

    public ILlamaSession CreateSession() => new FakeSession(this);

    public void Dispose() { }
}

internal sealed class FakeSession(FakeLlamaModel model) : ILlamaSession
{
    private readonly float[] _logits = new float[model.Shape.VocabSize];
    private int _step;

    public ILlamaModel Model => model;

    public int Position { get; private set; }

    /// <summary>Every Forward call's tokens, in order.</summary>
    public List<int[]> Calls { get; } = [];

    public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty || Position + tokens.Length > model.Shape.MaxContext)
            throw new InvalidOperationException($"{tokens.Length} tokens at position {Position} do not fit in {model.Shape.MaxContext}.");
        Calls.Add(tokens.ToArray());
        Position += tokens.Length;
        Array.Clear(_logits);
        _logits[model.Script[_step++]] = 10f;
        return _logits;
    }

    public ReadOnlySpan<float> Forward(int token) => Forward(new[] { token });

    public void Reset()
    {
        Position = 0;
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
    public static (TextGenerator Generator, FakeSession Session) Create(IReadOnlyList<int> script, int maxContext = 512)
    {
        var model = new FakeLlamaModel(512, maxContext, script);
        var session = (FakeSession)model.CreateSession();
        return (new TextGenerator(session, Tokenizer), session);
    }
}
