using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.ML.Tokenizers;
using Xunit;
using Llama.Compiled.Tools;

namespace Llama.Compiled.Tests;

/// <summary>
/// The byte-level BPE tokenizers of Llama 3 and Qwen3 against Hugging Face's own tokenizations of the
/// shared corpus, read from tokenizer.json and from a GGUF file written from it.
/// </summary>
public sealed class ByteLevelBpeTokenizerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("llama-bpe-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> Names => new(TokenizerGoldens.Names);

    [Theory]
    [MemberData(nameof(Names))]
    public void EveryGoldenMatchesFromTokenizerJson(string name)
    {
        ByteLevelBpeTokenizer tokenizer = TokenizerGoldens.Tokenizer(name);
        var failures = new List<string>();
        IReadOnlyList<TokenizerGoldens.Golden> goldens = TokenizerGoldens.Read(name);
        Assert.True(goldens.Count >= 30);
        foreach (TokenizerGoldens.Golden g in goldens)
        {
            IReadOnlyList<int> ids = tokenizer.EncodeToIds(g.Text, addSpecialTokens: false);
            IReadOnlyList<int> withSpecial = tokenizer.EncodeToIds(g.Text);
            string decoded = tokenizer.Decode(g.Ids);
            if (!ids.SequenceEqual(g.Ids))
                failures.Add($"{g}: ids {TokenizerGoldens.Show(ids)}, expected {TokenizerGoldens.Show(g.Ids)}");
            if (!withSpecial.SequenceEqual(g.IdsWithSpecial))
                failures.Add($"{g}: ids_with_special {TokenizerGoldens.Show(withSpecial)}, expected {TokenizerGoldens.Show(g.IdsWithSpecial)}");
            if (decoded != g.Decoded)
                failures.Add($"{g}: decoded \"{decoded}\", expected \"{g.Decoded}\"");
            // The other public encoders agree with EncodeToIds.
            Assert.Equal(withSpecial, tokenizer.EncodeToTokens(g.Text, out _).Select(t => t.Id));
            Assert.Equal(withSpecial.Count, tokenizer.CountTokens(g.Text));
            Assert.Equal(ids, LlamaTokenizers.EncodeWithoutSpecialTokens(tokenizer, g.Text));
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void EveryGoldenMatchesFromGguf(string name)
    {
        Tokenizer gguf = TokenizerGoldens.GgufTokenizer(name);
        var tokenizer = Assert.IsType<ByteLevelBpeTokenizer>(gguf);
        var failures = new List<string>();
        foreach (TokenizerGoldens.Golden g in TokenizerGoldens.Read(name))
        {
            if (!tokenizer.EncodeToIds(g.Text, addSpecialTokens: false).SequenceEqual(g.Ids))
                failures.Add($"{g}: ids {TokenizerGoldens.Show(tokenizer.EncodeToIds(g.Text, false))}");
            if (!tokenizer.EncodeToIds(g.Text).SequenceEqual(g.IdsWithSpecial))
                failures.Add($"{g}: ids_with_special {TokenizerGoldens.Show(tokenizer.EncodeToIds(g.Text))}");
            if (tokenizer.Decode(g.Ids) != g.Decoded)
                failures.Add($"{g}: decoded \"{tokenizer.Decode(g.Ids)}\"");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void Llama3AddsBosAndQwenDoesNot()
    {
        ByteLevelBpeTokenizer llama3 = TokenizerGoldens.Tokenizer("llama3");
        ByteLevelBpeTokenizer qwen = TokenizerGoldens.Tokenizer("qwen3");
        Assert.True(llama3.AddBeginningOfSentence);
        Assert.Equal(128000, llama3.BeginningOfSentenceId);
        Assert.Equal(128009, llama3.EndOfSentenceId); // <|eot_id|>, tokenizer_config.json's eos_token
        Assert.False(qwen.AddBeginningOfSentence);
        Assert.Equal(151645, qwen.EndOfSentenceId);   // <|im_end|>
        Assert.Equal([], qwen.EncodeToIds(""));
        Assert.Equal([128000], llama3.EncodeToIds(""));
        Assert.True(llama3.IsSpecialToken(128009));
        Assert.False(llama3.IsSpecialToken(9906));
    }

    [Fact]
    public void QwenNormalizesToNfcAndLlama3DoesNot()
    {
        // "é" as e + combining acute: Qwen's NFC normalizer makes it the precomposed character first.
        string decomposed = "caf\u0065\u0301", composed = "caf\u00E9";
        ByteLevelBpeTokenizer qwen = TokenizerGoldens.Tokenizer("qwen3");
        ByteLevelBpeTokenizer llama3 = TokenizerGoldens.Tokenizer("llama3");
        Assert.Equal(qwen.EncodeToIds(composed), qwen.EncodeToIds(decomposed));
        Assert.NotEqual(llama3.EncodeToIds(composed), llama3.EncodeToIds(decomposed));
        Assert.NotNull(qwen.Normalizer);
        Assert.Null(llama3.Normalizer);
    }

    [Fact]
    public void LongPiecesMergeAsShortOnes()
    {
        // A long run without spaces is one piece; the priority-queue merge must agree with the rescanning one on
        // every prefix (a prefix of up to 64 bytes is merged by rescanning).
        ByteLevelBpeTokenizer qwen = TokenizerGoldens.Tokenizer("qwen3");
        string cjk = string.Concat(Enumerable.Repeat("日本語のテキストと中文文本", 12));
        IReadOnlyList<int> whole = qwen.EncodeToIds(cjk);
        Assert.Equal(cjk, qwen.Decode(whole));
        // The same piece, split by the tokenizer where an added token interrupts, must encode the same way to the left.
        foreach (int cut in new[] { 7, 13, 20, 50 })
        {
            string left = cjk[..cut];
            IReadOnlyList<int> ids = qwen.EncodeToIds(left);
            Assert.Equal(left, qwen.Decode(ids));
        }
        Assert.True(whole.Count < Encoding.UTF8.GetByteCount(cjk) / 2, "merges applied to the long piece");
    }

    [Fact]
    public void SpecialTokenTextIsOneIdAndTheRestIsEncodedAround()
    {
        ByteLevelBpeTokenizer qwen = TokenizerGoldens.Tokenizer("qwen3");
        IReadOnlyList<int> ids = qwen.EncodeToIds("<|im_start|>user\nHi<|im_end|>", addSpecialTokens: false);
        Assert.Equal(151644, ids[0]);
        Assert.Equal(151645, ids[^1]);
        Assert.Equal(qwen.EncodeToIds("user\nHi", addSpecialTokens: false), ids.Skip(1).Take(ids.Count - 2));
    }

    [Fact]
    public void MalformedFilesAreModelFormatExceptions()
    {
        string Write(string name, string json)
        {
            string dir = Path.Combine(_dir, name);
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), json);
            return dir;
        }
        string bytes = string.Join(",", Enumerable.Range(0, 256).Select(b => $"\"{ByteChar(b)}\":{b}"));
        string pre = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}";

        var truncated = Assert.Throws<ModelFormatException>(() => LlamaTokenizers.Load(Write("truncated", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":")));
        Assert.Contains("tokenizer.json", truncated.Message);
        var noMerges = Assert.Throws<ModelFormatException>(() => LlamaTokenizers.Load(Write("nomerges", $"{{\"pre_tokenizer\":{pre},\"model\":{{\"type\":\"BPE\",\"vocab\":{{{bytes}}}}}}}")));
        Assert.Contains("no merges", noMerges.Message);
        var badMerge = Assert.Throws<ModelFormatException>(() => LlamaTokenizers.Load(Write("badmerge", $"{{\"pre_tokenizer\":{pre},\"model\":{{\"type\":\"BPE\",\"vocab\":{{{bytes}}},\"merges\":[\"a zz\"]}}}}")));
        Assert.Contains("\"a zz\"", badMerge.Message);
        var unknownPre = Assert.Throws<ModelFormatException>(() => LlamaTokenizers.Load(Write("pre", $"{{\"pre_tokenizer\":{{\"type\":\"Metaspace\"}},\"model\":{{\"type\":\"BPE\",\"vocab\":{{{bytes}}},\"merges\":[]}}}}")));
        Assert.Contains("Metaspace", unknownPre.Message);
        var notByteLevel = Assert.Throws<ModelFormatException>(() => LlamaTokenizers.Load(Write("wordpiece", $"{{\"model\":{{\"type\":\"WordPiece\",\"vocab\":{{}}}}}}")));
        Assert.Contains("WordPiece", notByteLevel.Message);
        var missingByte = Assert.Throws<ModelFormatException>(() => LlamaTokenizers.Load(Write("nobyte", $"{{\"pre_tokenizer\":{pre},\"model\":{{\"type\":\"BPE\",\"vocab\":{{\"a\":0}},\"merges\":[]}}}}")));
        Assert.Contains("byte", missingByte.Message);
        // A minimal valid one loads and round-trips bytes.
        Tokenizer minimal = LlamaTokenizers.Load(Write("minimal", $"{{\"pre_tokenizer\":{pre},\"model\":{{\"type\":\"BPE\",\"vocab\":{{{bytes}}},\"merges\":[]}}}}"));
        Assert.Equal("hé 🦙", minimal.Decode(minimal.EncodeToIds("hé 🦙")));
    }

    [Fact]
    public void GgufWithAnUnknownPreTokenizerNamesIt()
    {
        string path = Path.Combine(_dir, "unknown-pre.gguf");
        ByteLevelBpeTokenizer llama3 = TokenizerGoldens.Tokenizer("llama3");
        using (var writer = new GgufWriter(path))
        {
            writer.AddString("general.architecture", "llama");
            GgufBpeVocabulary.FromTokenizer(llama3, preTokenizer: "deepseek-coder").AddTo(writer);
            writer.Finish();
        }
        var e = Assert.Throws<ModelFormatException>(() => GgufTokenizer.Load(path));
        Assert.Contains("\"deepseek-coder\"", e.Message);
        Assert.Contains("llama-bpe", e.Message);
    }

    [Fact]
    public void GgufVocabularyIsPaddedAndStillEncodesTheSame()
    {
        // Qwen's embeddings have more rows (151,936) than the tokenizer has ids (151,669): [PADn] fillers, type unused.
        ByteLevelBpeTokenizer qwen = TokenizerGoldens.Tokenizer("qwen3");
        GgufBpeVocabulary vocabulary = GgufBpeVocabulary.FromTokenizer(qwen, vocabSize: 151_936);
        Assert.Equal("qwen2", vocabulary.PreTokenizer);
        Assert.Equal(151_936, vocabulary.Tokens.Count);
        Assert.Equal("[PAD151935]", vocabulary.Tokens[^1]);
        string path = Path.Combine(_dir, "padded.gguf");
        using (var writer = new GgufWriter(path))
        {
            vocabulary.AddTo(writer);
            writer.Finish();
        }
        Tokenizer gguf = GgufTokenizer.Load(path);
        foreach (TokenizerGoldens.Golden g in TokenizerGoldens.Read("qwen3"))
            Assert.Equal(g.Ids, gguf.EncodeToIds(g.Text));
        Assert.Equal("llama-bpe", GgufBpeVocabulary.FromTokenizer(TokenizerGoldens.Tokenizer("llama3")).PreTokenizer);
    }

    [Fact]
    public void TokenizerJsonReaderAcceptsEscapesPairMergesMergesFirstAndAByteOrderMark()
    {
        // The same tiny vocabulary (the 256 bytes, "ab" = 256, "abc" = 257) written four ways.
        string Write(string name, string json, bool bom = false)
        {
            string dir = Path.Combine(_dir, name);
            Directory.CreateDirectory(dir);
            File.WriteAllBytes(Path.Combine(dir, "tokenizer.json"), [.. (bom ? new byte[] { 0xEF, 0xBB, 0xBF } : []), .. Encoding.UTF8.GetBytes(json)]);
            return dir;
        }
        string pre = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}";
        string plain = string.Join(",", Enumerable.Range(0, 256).Select(b => $"\"{ByteChar(b)}\":{b}")) + ",\"ab\":256,\"abc\":257";
        // Every key as \uXXXX escapes, with whitespace and newlines between the tokens.
        string escaped = string.Join(",\n  ", Enumerable.Range(0, 256).Select(b => $"\"\\u{(int)ByteChar(b)[^1]:X4}\" : {b}")) + ",\"\\u0061b\":256,\"a\\u0062c\":257";
        string[] files =
        [
            Write("strings", $"{{\"pre_tokenizer\":{pre},\"model\":{{\"type\":\"BPE\",\"vocab\":{{{plain}}},\"merges\":[\"a b\",\"ab c\"]}}}}"),
            Write("pairs", $"{{ \"model\" : {{ \"type\" : \"BPE\", \"vocab\" : {{ {escaped} }},\n \"merges\" : [ [ \"a\" , \"b\" ] , [\"\\u0061b\", \"c\"] ] }} , \"pre_tokenizer\" : {pre} }}\n"),
            Write("mergesfirst", $"{{\"model\":{{\"merges\":[[\"a\",\"b\"],[\"ab\",\"c\"]],\"dropout\":null,\"vocab\":{{{plain}}},\"type\":\"BPE\",\"extra\":[1,-2.5e3,true,{{\"x\":\"]}}\\\"\"}}]}},\"pre_tokenizer\":{pre}}}"),
            Write("bom", $"{{\"pre_tokenizer\":{pre},\"model\":{{\"type\":\"BPE\",\"vocab\":{{{plain}}},\"merges\":[\"a b\",\"ab c\"]}}}}", bom: true),
        ];
        foreach (string dir in files)
        {
            var tokenizer = (ByteLevelBpeTokenizer)LlamaTokenizers.Load(dir);
            Assert.Equal(258, tokenizer.VocabularySize);
            Assert.Equal([257, 256, 32, 97], tokenizer.EncodeToIds("abcab a", addSpecialTokens: false));
            Assert.Equal("abcab a", tokenizer.Decode([257, 256, 32, 97]));
            Assert.Equal("\u0120", tokenizer.MapIdToToken(32));
        }
        var fraction = Assert.Throws<ModelFormatException>(() => LlamaTokenizers.Load(Write("fraction", $"{{\"model\":{{\"type\":\"BPE\",\"vocab\":{{\"a\":1.5}},\"merges\":[]}}}}")));
        Assert.Contains("\"a\" is not an integer", fraction.Message);
        var trailing = Assert.Throws<ModelFormatException>(() => LlamaTokenizers.Load(Write("trailing", $"{{\"pre_tokenizer\":{pre},\"model\":{{\"type\":\"BPE\",\"vocab\":{{{plain}}},\"merges\":[]}}}} x")));
        Assert.Contains("tokenizer.json", trailing.Message);
        var badEscape = Assert.Throws<ModelFormatException>(() => LlamaTokenizers.Load(Write("escape", $"{{\"model\":{{\"type\":\"BPE\",\"vocab\":{{\"\\q\":1}},\"merges\":[]}}}}")));
        Assert.Contains("escape", badEscape.Message);
    }

    private static string ByteChar(int b)
    {
        bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE;
        int shifted = 0;
        for (int i = 0; i < b; i++)
            shifted += i is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE ? 0 : 1;
        char c = printable ? (char)b : (char)(256 + shifted);
        return c switch { '"' => "\\\"", '\\' => "\\\\", _ => c.ToString() };
    }
}
