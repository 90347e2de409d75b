using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled.Tests.Grammars;

/// <summary>A tokenizer with the id that ends a text, for running grammars over several real vocabularies.</summary>
public sealed record Vocab(string Name, Tokenizer Tokenizer, int VocabSize, int EosId)
{
    public override string ToString() => Name;
}

/// <summary>The vocabularies of the tests, loaded once: two SentencePiece, two byte-level BPE.</summary>
public static class Vocabs
{
    private static readonly Lazy<Vocab> LazyStories = new(() => Make("stories260K-sp512", LlamaTokenizers.Load(TestPaths.Stories260KHf)));
    private static readonly Lazy<Vocab> LazyLlama2 = new(() => Make("llama2-sp32000", LlamaTokenizers.Load(Path.Combine(TestPaths.SharedModels, "llama2-tokenizer"))));
    private static readonly Lazy<Vocab> LazyLlama3 = new(() => Make("llama3-bpe", LlamaTokenizers.Load(Path.Combine(TestPaths.Tokenizers, "llama3", "tokenizer.json"))));
    private static readonly Lazy<Vocab> LazyQwen3 = new(() => Make("qwen3-bpe", LlamaTokenizers.Load(Path.Combine(TestPaths.Tokenizers, "qwen3", "tokenizer.json"))));

    public static Vocab Stories => LazyStories.Value;
    public static Vocab Llama2 => LazyLlama2.Value;
    public static Vocab Llama3 => LazyLlama3.Value;
    public static Vocab Qwen3 => LazyQwen3.Value;

    public static Vocab ByName(string name) => name switch
    {
        "stories260K-sp512" => Stories,
        "llama2-sp32000" => Llama2,
        "llama3-bpe" => Llama3,
        "qwen3-bpe" => Qwen3,
        _ => throw new ArgumentException(name),
    };

    public static readonly string[] Names = ["stories260K-sp512", "llama2-sp32000", "llama3-bpe", "qwen3-bpe"];

    private static Vocab Make(string name, Tokenizer tokenizer)
    {
        int size, eos;
        if (tokenizer is ByteLevelBpeTokenizer byteLevel)
        {
            size = byteLevel.VocabularySize;
            eos = byteLevel.EndOfSentenceId ?? byteLevel.MapTokenToId("<|endoftext|>") ?? throw new InvalidOperationException("no EOS");
        }
        else
        {
            var sp = (SentencePieceTokenizer)tokenizer;
            size = sp.Vocabulary.Count;
            eos = sp.EndOfSentenceId;
        }
        return new Vocab(name, tokenizer, size, eos);
    }
}

/// <summary>
/// Generates under a grammar with random logits standing in for a model: seeded noise, plus a bias toward short
/// "structural" tokens (one punctuation character or digit) and EOS, strong enough that strings close and containers
/// end after a few tokens on average, so outputs complete well within the token cap whatever the vocabulary's size.
/// </summary>
public static class RandomModel
{
    private static readonly Dictionary<Tokenizer, bool[]> Structural = [];

    public sealed record Output(string Text, List<int> Ids, bool Finished, bool EndedWithEos);

    public static Output Generate(Grammar grammar, Vocab vocab, ulong seed, int maxTokens = 4000, float temperature = 1f)
    {
        GrammarMatcher matcher = grammar.CreateMatcher(vocab.Tokenizer, [vocab.EosId]);
        var sampler = new Sampler(vocab.VocabSize, new SamplingOptions { Temperature = temperature, Seed = seed });
        var random = new Random((int)(seed % int.MaxValue));
        bool[] structural = StructuralTokens(vocab);
        float bias = MathF.Log(vocab.VocabSize) - 1f;
        var logits = new float[vocab.VocabSize];
        var ids = new List<int>();
        bool eos = false;
        for (int step = 0; step < maxTokens && !matcher.IsFinished; step++)
        {
            for (int i = 0; i < logits.Length; i++)
                logits[i] = (float)(random.NextDouble() * 2 - 1) * 1.7f + (structural[i] ? bias : 0f);
            logits[vocab.EosId] += bias;
            int token = sampler.Sample(logits, [], matcher);
            matcher.Accept(token);
            if (token == vocab.EosId)
            {
                eos = true;
                break;
            }
            ids.Add(token);
        }
        return new Output(Decode(vocab, ids), ids, matcher.IsFinished || eos, eos);
    }

    /// <summary>The text of <paramref name="ids"/> as the tokenizer decodes it (not through the grammar's own byte table).</summary>
    public static string Decode(Vocab vocab, List<int> ids)
    {
        if (vocab.Tokenizer is SentencePieceTokenizer)
        {
            // SentencePiece drops the first piece's leading space when decoding; a "▁" piece in front takes the drop.
            int space = ((SentencePieceTokenizer)vocab.Tokenizer).Vocabulary["\u2581"];
            string text = vocab.Tokenizer.Decode([space, .. ids]);
            return text;
        }
        // Byte-level: the tokens' bytes by GPT-2's byte map (written again here), not Decode, which cleans up spaces
        // before punctuation (" ," → ",") when the tokenizer says so (Llama 3).
        var byteLevel = (ByteLevelBpeTokenizer)vocab.Tokenizer;
        var bytes = new List<byte>();
        HashSet<int> added = AddedIds(byteLevel);
        foreach (int id in ids)
        {
            string token = byteLevel.MapIdToToken(id)!;
            if (added.Contains(id))
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(token));
                continue;
            }
            foreach (char c in token)
                bytes.Add(UnicodeToByte[c]);
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    private static readonly Dictionary<char, byte> UnicodeToByte = BuildUnicodeToByte();

    private static Dictionary<char, byte> BuildUnicodeToByte()
    {
        var map = new Dictionary<char, byte>();
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= 0x21 and <= 0x7E or >= 0xA1 and <= 0xAC or >= 0xAE;
            map[printable ? (char)b : (char)(256 + n++)] = (byte)b;
        }
        return map;
    }

    private static HashSet<int> AddedIds(ByteLevelBpeTokenizer tokenizer) => [.. tokenizer.AddedTokens.Values];

    private static bool[] StructuralTokens(Vocab vocab)
    {
        lock (Structural)
        {
            if (Structural.TryGetValue(vocab.Tokenizer, out bool[]? cached))
                return cached;
            var result = new bool[vocab.VocabSize];
            for (int id = 0; id < vocab.VocabSize; id++)
            {
                if (id == vocab.EosId)
                    continue;
                string text;
                try
                {
                    text = vocab.Tokenizer.Decode([id]);
                }
                catch (Exception)
                {
                    continue;
                }
                result[id] = text.Length == 1 && (char.IsAsciiDigit(text[0]) || "\"{}[],:-.".Contains(text[0], StringComparison.Ordinal));
            }
            Structural[vocab.Tokenizer] = result;
            return result;
        }
    }

    public static string Utf8(ReadOnlySpan<byte> bytes) => Encoding.UTF8.GetString(bytes);
}
