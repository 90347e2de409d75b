using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Microsoft.ML.Tokenizers;
using Xunit;
using Llama.Compiled.Tools;

namespace Llama.Compiled.Tests.Formats;

public sealed class GgufTokenizerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("llama-gguf-tokenizer-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Stories260KModel => Path.Combine(TestPaths.Stories260KHf, "tokenizer.model");
    private static string Llama2Model => Path.Combine(TestPaths.SharedModels, "llama2-tokenizer", "tokenizer.model");

    private static Tokenizer FromModel(string path) => FromModel(File.ReadAllBytes(path));

    private static Tokenizer FromModel(byte[] model) =>
        LlamaTokenizer.Create(new MemoryStream(model), addBeginOfSentence: true, addEndOfSentence: false);

    /// <summary>Texts without leading, trailing or repeated spaces (where the two stories260K normalizers agree).</summary>
    private static readonly string[] PlainTexts =
    [
        "Once upon a time",
        "Once upon a time, there was a little girl named Lily. She loved to play outside.",
        "Hello, world!",
        "The year 2024 had 366 days; 3.14159 is pi.",
        "1234567890 42 007",
        "Tom said: \"Let's go!\" and they went.",
        "naïve café – résumé",
        "日本語のテキスト",
        "emoji 🦙🚀 and ✓ marks",
        "Zürich, Kraków, Ελληνικά, русский",
        "line one\nline two\n\nline four",
        "tab\tseparated\tvalues",
        "x\u0000y",
        "<s> and </s> are text here",
        "mixedCASE words ALLCAPS",
        "über-long-compound-words-with-hyphens",
    ];

    /// <summary>Texts whose spaces the stories260K tokenizer.model (remove_extra_whitespaces = true) would collapse.</summary>
    private static readonly string[] SpacedTexts =
    [
        " leading space",
        "trailing space ",
        "  two leading",
        "double  space",
        "   ",
        " ",
        "\n starts with newline",
        "end with newline\n",
        "many     spaces   inside",
        " Once upon a time ",
    ];

    [Fact]
    public void Stories260KGgufEncodesLikeItsTokenizerModel()
    {
        Tokenizer gguf = GgufTokenizer.Load(Stories260KFormatsTests.F32Gguf);
        Tokenizer reference = FromModel(Stories260KModel);

        Assert.Equal([1, 403, 407, 261, 378], gguf.EncodeToIds("Once upon a time"));
        foreach (string text in PlainTexts)
        {
            IReadOnlyList<int> ids = reference.EncodeToIds(text);
            Assert.True(ids.AsSpanEquals(gguf.EncodeToIds(text)), $"\"{text}\": [{string.Join(", ", ids)}] vs [{string.Join(", ", gguf.EncodeToIds(text))}]");
            Assert.Equal(reference.Decode(ids), gguf.Decode(ids));
        }
    }

    [Fact]
    public void SingleCharactersAreEncoded()
    {
        // Microsoft.ML.Tokenizers 2.0.1 normalizes a one-character text to "" when remove_extra_whitespaces
        // is set (as in tok512.model): "a" → [] from tokenizer.model. The GGUF tokenizer keeps spaces, so
        // it is not affected and gives SentencePiece's answer.
        Tokenizer gguf = GgufTokenizer.Load(Stories260KFormatsTests.F32Gguf);
        Assert.Equal([1, 261], gguf.EncodeToIds("a"));
        Assert.Equal([], FromModel(Stories260KModel).EncodeToIds("a")); // the library bug; remove when fixed
        Tokenizer keepSpaces = FromModel(SentencePieceModel.WithNormalizerField(File.ReadAllBytes(Stories260KModel), field: 4, value: 0));
        foreach (string text in new[] { "a", "?", "I", "7", "é" })
            Assert.Equal(keepSpaces.EncodeToIds(text), gguf.EncodeToIds(text));
    }

    [Fact]
    public void Stories260KGgufKeepsSpacesAsLlamaCppDoes()
    {
        // The GGUF file does not record SentencePiece's remove_extra_whitespaces (tok512.model sets it);
        // llama.cpp's llama tokenizer keeps every space, and so does the tokenizer built from the GGUF.
        Tokenizer gguf = GgufTokenizer.Load(Stories260KFormatsTests.F32Gguf);
        byte[] keepSpaces = SentencePieceModel.WithNormalizerField(File.ReadAllBytes(Stories260KModel), field: 4, value: 0);
        Tokenizer reference = FromModel(keepSpaces);
        Tokenizer collapsing = FromModel(Stories260KModel);

        bool anyDifferent = false;
        foreach (string text in SpacedTexts)
        {
            Assert.Equal(reference.EncodeToIds(text), gguf.EncodeToIds(text));
            anyDifferent |= !collapsing.EncodeToIds(text).AsSpanEquals(gguf.EncodeToIds(text));
        }
        Assert.True(anyDifferent);
        foreach (string text in PlainTexts)
            Assert.Equal(reference.EncodeToIds(text), gguf.EncodeToIds(text));
    }

    [Fact]
    public void RemoveExtraWhitespacesKeyReproducesTheOriginalModelExactly()
    {
        string path = Path.Combine(_dir, "collapse.gguf");
        SentencePieceModel.Read(Stories260KModel).WriteGguf(path, ("tokenizer.ggml.remove_extra_whitespaces", true));
        Tokenizer gguf = GgufTokenizer.Load(path);
        Tokenizer reference = FromModel(Stories260KModel);
        foreach (string text in PlainTexts)
            Assert.Equal(reference.EncodeToIds(text), gguf.EncodeToIds(text));
        foreach (string text in SpacedTexts)
            Assert.Equal(reference.EncodeToIds(text), gguf.EncodeToIds(text));
    }

    [Fact]
    public void Llama2VocabularyInAGgufEncodesLikeTheLlama2TokenizerModel()
    {
        SentencePieceModel model = SentencePieceModel.Read(Llama2Model);
        Assert.Equal(32000, model.Pieces.Count);
        string path = Path.Combine(_dir, "llama2-vocab.gguf");
        model.WriteGguf(path);

        Tokenizer gguf = GgufTokenizer.Load(path);
        Tokenizer reference = FromModel(Llama2Model);
        List<string> texts = VariedTexts();
        Assert.True(texts.Count >= 300);
        int tokens = 0;
        foreach (string text in texts)
        {
            IReadOnlyList<int> expected = reference.EncodeToIds(text);
            IReadOnlyList<int> actual = gguf.EncodeToIds(text);
            Assert.True(expected.AsSpanEquals(actual), $"\"{text}\": expected [{string.Join(", ", expected)}], got [{string.Join(", ", actual)}]");
            Assert.Equal(reference.Decode(expected), gguf.Decode(expected));
            tokens += expected.Count;
        }
        Assert.True(tokens > 3000, $"{tokens}");
        Assert.Equal(1, gguf.EncodeToIds("x")[0]); // BOS
    }

    /// <summary>A few hundred deterministic strings: words, punctuation, digits, code, many scripts, emoji, whitespace runs.</summary>
    private static List<string> VariedTexts()
    {
        string[] parts =
        [
            "the", "The", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Llama", "llama.cpp", "tokenizer",
            "don't", "I'm", "we'll", "e.g.", "U.S.A.", "3.14", "1,000,000", "2024-06-07", "0x1F", "100%", "$5", "#tag",
            "@user", "a+b=c", "x^2", "f(x)", "{}", "[1, 2]", "<tag>", "</s>", "<s>", "<unk>", "->", "=>", "...", "!?",
            "naïve", "façade", "Straße", "smörgåsbord", "ñandú", "İstanbul", "ǅ", "ﬁ", "Ⅻ", "①", "½",
            "日本", "語", "中文字符", "한국어", "ไทย", "עברית", "العربية", "हिन्दी", "ελληνικά", "кириллица", "ქართული",
            "🦙", "🚀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "✓", "→", "∑", "∞", "≠", "ℝ", "\u00A0", "\u200B", "\u3000",
            "if (x > 0) { return y; }", "for i in range(10):", "SELECT * FROM t;", "http://example.com/a?b=c",
            "\t", "\n", "\r\n", " ", "  ", "   ", "\n\n", "0", "00", "007", "12345678901234567890",
        ];
        var random = new Random(7);
        var texts = new List<string>(parts);
        for (int i = 0; i < 320; i++)
        {
            var sb = new StringBuilder();
            int n = random.Next(1, 9);
            for (int j = 0; j < n; j++)
            {
                if (j > 0)
                    sb.Append(random.Next(6) switch { 0 => "", 1 => "  ", 2 => "\n", _ => " " });
                sb.Append(parts[random.Next(parts.Length)]);
            }
            texts.Add(sb.ToString());
        }
        return texts;
    }

    [Fact]
    public void CreateFromOpenedWeightsMetadata()
    {
        using ModelWeights weights = ModelWeights.Open(Stories260KFormatsTests.Q8Gguf);
        Tokenizer tokenizer = GgufTokenizer.Create(weights.Metadata!);
        Assert.Equal([1, 403, 407, 261, 378], tokenizer.EncodeToIds("Once upon a time"));
        Assert.Equal("Once upon a time", tokenizer.Decode([1, 403, 407, 261, 378]));
    }

    [Fact]
    public void AddBosAndEosFollowTheMetadata()
    {
        string path = Path.Combine(_dir, "eos.gguf");
        SentencePieceModel.Read(Stories260KModel).WriteGguf(path);
        // WriteGguf stores add_bos_token = true, add_eos_token = false; flip them by writing a second file.
        var model = SentencePieceModel.Read(Stories260KModel);
        using (var writer = new GgufWriter(path))
        {
            writer.AddString("general.architecture", "llama");
            (model.ToGguf() with { AddBos = false, AddEos = true }).AddTo(writer);
            writer.Finish();
        }
        Assert.Equal([403, 407, 261, 378, 2], GgufTokenizer.Load(path).EncodeToIds("Once upon a time"));
    }

    [Fact]
    public void InvalidTokenizerMetadataIsAFormatError()
    {
        SentencePieceModel model = SentencePieceModel.Read(Stories260KModel);
        string path = Path.Combine(_dir, "bad.gguf");

        void Expect(string message, Action<GgufWriter> write)
        {
            using (var writer = new GgufWriter(path))
            {
                writer.AddString("general.architecture", "llama");
                write(writer);
                writer.Finish();
            }
            var e = Assert.Throws<ModelFormatException>(() => GgufTokenizer.Load(path));
            Assert.Contains(path, e.Message);
            Assert.Contains(message, e.Message);
        }

        Expect("tokenizer.ggml.model is missing", _ => { });
        Expect("tokenizer.ggml.model is \"t5\"", w => w.AddString("tokenizer.ggml.model", "t5"));
        Expect("no tokenizer.ggml.tokens", w => w.AddString("tokenizer.ggml.model", "gpt2"));
        Expect("no tokenizer.ggml.tokens", w => w.AddString("tokenizer.ggml.model", "llama"));
        Expect("tokenizer.ggml.tokens is a string, expected an array of strings", w =>
        {
            w.AddString("tokenizer.ggml.model", "llama");
            w.AddString("tokenizer.ggml.tokens", "a");
        });
        Expect("tokenizer.ggml.scores has 2 values for 512 tokens", w =>
        {
            w.AddString("tokenizer.ggml.model", "llama");
            w.AddStringArray("tokenizer.ggml.tokens", model.Pieces);
            w.AddFloat32Array("tokenizer.ggml.scores", [1f, 2f]);
        });
        Expect("tokenizer.ggml.bos_token_id is 512, outside the vocabulary of 512 tokens", w =>
            (model.ToGguf() with { BosTokenId = 512 }).AddTo(w));
        var duplicated = new List<string>(model.Pieces) { [300] = model.Pieces[301] };
        Expect("the tokenizer vocabulary is not valid", w => (model.ToGguf() with { Tokens = duplicated }).AddTo(w));

        Assert.Throws<FileNotFoundException>(() => GgufTokenizer.Load(Path.Combine(_dir, "missing.gguf")));
        File.WriteAllBytes(path, [1, 2, 3, 4, 5, 6, 7, 8]);
        Assert.Throws<ModelFormatException>(() => GgufTokenizer.Load(path));
    }
}

internal static class ListExtensions
{
    public static bool AsSpanEquals(this IReadOnlyList<int> a, IReadOnlyList<int> b)
    {
        if (a.Count != b.Count)
            return false;
        for (int i = 0; i < a.Count; i++)
        {
            if (a[i] != b[i])
                return false;
        }
        return true;
    }
}
