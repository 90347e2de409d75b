using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using System.Text.Json;
using System.Threading.Tasks;
using Json.Schema;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Tests.Grammars;

/// <summary>
/// Tool calls under the grammar of the declared functions, with random logits over the real Llama 3 and Qwen3
/// vocabularies standing in for a model: a lazy grammar (<see cref="GenerationOptions.GrammarTriggers"/>) leaves the text
/// free and constrains each call's JSON from where it starts; a required call is always a valid call.
/// </summary>
public class ToolCallGrammarTests(ITestOutputHelper output)
{
    private static readonly EvaluationOptions Validation = new() { RequireFormatValidation = true };
    private static IReadOnlyList<AIFunctionDeclaration> Tools => Llama.Compiled.Tests.ChatToolTemplateTests.Tools;

    private static int Id(Vocab vocab, string special) => ((ByteLevelBpeTokenizer)vocab.Tokenizer).AddedTokens[special];

    private static int[] Encode(Vocab vocab, string text) => [.. LlamaTokenizers.EncodeWithoutSpecialTokens(vocab.Tokenizer, text)];

    /// <summary>
    /// The calls in <paramref name="text"/> as a lazy grammar sees them: from each trigger (outside a call) one JSON value,
    /// which must directly follow it, parse and validate against the call schema. Returns the calls and the text outside them.
    /// </summary>
    private static (List<JsonElement> Calls, string FreeText) CheckCalls(string text, ToolCallFormat format, JsonSchema callSchema, bool mayBeCutShort)
    {
        var calls = new List<JsonElement>();
        var free = new StringBuilder();
        int position = 0;
        while (true)
        {
            int start;
            if (format == ToolCallFormat.Hermes)
            {
                int trigger = text.IndexOf(format.CallPrefix, position, StringComparison.Ordinal);
                start = trigger < 0 ? -1 : trigger + format.CallPrefix.Length;
                free.Append(text, position, (trigger < 0 ? text.Length : trigger) - position);
            }
            else
            {
                // Llama 3.1: a call only where the message starts with "{" (after whitespace).
                start = position == 0 && text.TrimStart().StartsWith('{') ? text.Length - text.TrimStart().Length : -1;
                free.Append(text, position, (start < 0 ? text.Length : start) - position);
            }
            if (start < 0)
                return (calls, free.ToString());
            byte[] rest = Encoding.UTF8.GetBytes(text[start..]);
            Assert.True(rest.Length > 0 && rest[0] == (byte)'{' || mayBeCutShort, $"no JSON right after the trigger: {text}");
            var reader = new Utf8JsonReader(rest);
            JsonDocument? document;
            try
            {
                Assert.True(JsonDocument.TryParseValue(ref reader, out document), text);
            }
            catch (JsonException) when (mayBeCutShort)
            {
                return (calls, free.ToString()); // the last call, cut short by the token limit
            }
            JsonElement call = document!.RootElement.Clone();
            EvaluationResults results = callSchema.Evaluate(call, Validation);
            Assert.True(results.IsValid, $"the call does not validate: {call.GetRawText()} in {text}");
            calls.Add(call);
            position = start + Encoding.UTF8.GetString(rest, 0, (int)reader.BytesConsumed).Length;
        }
    }

    public static TheoryData<string> Families => new() { "qwen3-bpe", "llama3-bpe" };

    [Theory]
    [MemberData(nameof(Families))]
    public void InAutoModeTheTextIsFreeAndEachCallValidates(string vocabName)
    {
        Vocab vocab = Vocabs.ByName(vocabName);
        bool hermes = vocabName.StartsWith("qwen", StringComparison.Ordinal);
        ToolCallFormat format = hermes ? ToolCallFormat.Hermes : ToolCallFormat.Llama3Json;
        JsonElement callSchemaJson = format.GetCallJsonSchema(Tools);
        JsonSchema callSchema = JsonSchema.FromText(callSchemaJson.GetRawText());
        Grammar grammar = Grammar.FromJsonSchema(callSchemaJson);
        int end = Id(vocab, hermes ? "<|im_end|>" : "<|eot_id|>");
        int calls = 0, textAnswers = 0;
        for (int seed = 1; seed <= 8; seed++)
        {
            // Text that no grammar would allow comes first (Qwen: always; Llama: in every other run, else the message may
            // start with "{"); the model then writes freely, with calls now and then.
            string prefix = hermes || seed % 2 == 0 ? "Sure, {\"let me\": check}\n" : "";
            var model = new ToolCallingModel(vocab, seed, Encode(vocab, prefix), end, hermes ? Id(vocab, "<tool_call>") : -1);
            var generator = new TextGenerator(model.CreateSession(), vocab.Tokenizer);
            var options = new GenerationOptions
            {
                MaxNewTokens = 600,
                StopTokenIds = [end],
                Grammar = grammar,
                GrammarTriggers = format.CallTriggers,
                Sampling = new SamplingOptions { Seed = (ulong)seed },
            };
            GenerationResult result = generator.GenerateText("x", options);
            output.WriteLine($"{result.Stats.StopReason} {result.Stats.GeneratedTokens}: {result.Text}");
            Assert.StartsWith(prefix, result.Text);
            (List<JsonElement> found, string free) = CheckCalls(result.Text, format, callSchema, result.Stats.StopReason == StopReason.MaxNewTokens);
            calls += found.Count;
            if (found.Count == 0)
                textAnswers++;
            if (!hermes)
                Assert.True(found.Count <= 1); // a Llama call starts the message
        }
        output.WriteLine($"{calls} calls, {textAnswers} answers without one");
        Assert.True(calls >= 3, "too few calls to say anything");
        Assert.True(textAnswers >= 1 || hermes, "every answer was a call");
    }

    [Theory]
    [InlineData("qwen3-bpe", null)]
    [InlineData("qwen3-bpe", "get_time")]
    [InlineData("llama3-bpe", null)]
    [InlineData("llama3-bpe", "get_weather")]
    public async Task ARequiredCallIsAlwaysAValidCall(string vocabName, string? function)
    {
        Vocab vocab = Vocabs.ByName(vocabName);
        bool hermes = vocabName.StartsWith("qwen", StringComparison.Ordinal);
        ChatTemplate template = Llama.Compiled.Tests.ChatToolTemplateTests.Template(hermes ? "Qwen3" : "Llama-3.2-1B-Instruct");
        int end = Id(vocab, hermes ? "<|im_end|>" : "<|eot_id|>");
        // The model would rather write text (and end): the grammar makes it a call.
        var model = new ToolCallingModel(vocab, 11, Encode(vocab, "I think"), end, trigger: -1);
        using var client = new LlamaChatClient(model, vocab.Tokenizer, template, new GenerationOptions { MaxNewTokens = 1000 });
        var options = new ChatOptions
        {
            Tools = [.. Tools],
            ToolMode = function is null ? ChatToolMode.RequireAny : ChatToolMode.RequireSpecific(function),
        };
        for (int seed = 1; seed <= 6; seed++)
        {
            options.Seed = seed;
            ChatResponse response = await client.GetResponseAsync(Llama.Compiled.Tests.ChatToolTemplateTests.Conversation("ask", system: false), options);
            FunctionCallContent call = Assert.IsType<FunctionCallContent>(Assert.Single(Assert.Single(response.Messages).Contents));
            output.WriteLine($"{call.Name} {JsonSerializer.Serialize(call.Arguments)}");
            Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
            AIFunctionDeclaration declaration = Assert.Single(Tools, t => t.Name == call.Name);
            if (function is not null)
                Assert.Equal(function, call.Name);
            JsonElement arguments = JsonSerializer.SerializeToElement(call.Arguments);
            Assert.True(JsonSchema.FromText(declaration.JsonSchema.GetRawText()).Evaluate(arguments, Validation).IsValid, arguments.GetRawText());
        }
    }

    private static GenerationResult Scripted(Vocab vocab, ToolCallFormat format, int[] script, int end, int maxNewTokens = 256)
    {
        var generator = new TextGenerator(new FakeLlamaModel(vocab.VocabSize, 512, script).CreateSession(), vocab.Tokenizer);
        var options = new GenerationOptions
        {
            MaxNewTokens = maxNewTokens,
            StopTokenIds = [end],
            Grammar = Grammar.FromJsonSchema(format.GetCallJsonSchema(Tools)),
            GrammarTriggers = format.CallTriggers,
            Sampling = new SamplingOptions { Temperature = 0f },
        };
        return generator.GenerateText("x", options);
    }

    [Fact]
    public void ATokenMayFinishTheCallAndGoOnWithFreeText()
    {
        // Qwen: the call's JSON ends inside the token "\"}}\n"; free text follows.
        Vocab vocab = Vocabs.Qwen3;
        int end = Id(vocab, "<|im_end|>");
        string json = "{\"name\": \"get_time\", \"arguments\": {\"timezone\": \"UTC\"}}";
        int[] script = [.. Encode(vocab, "Hi {oops} "), Id(vocab, "<tool_call>"), .. Encode(vocab, "\n" + json + "\n"), Id(vocab, "</tool_call>"), .. Encode(vocab, " and {more"), end];
        Assert.Contains(script, id => vocab.Tokenizer.Decode([id]) == "\"}}\n");
        GenerationResult result = Scripted(vocab, ToolCallFormat.Hermes, script, end);
        Assert.Equal("Hi {oops} <tool_call>\n" + json + "\n</tool_call> and {more", result.Text);
        Assert.Equal(StopReason.EndOfSequence, result.Stats.StopReason);

        // The same with a call the schema does not allow (an unknown function): the grammar steers away from it.
        string wrong = "{\"name\": \"get_date\", \"arguments\": {}}";
        script = [.. Encode(vocab, "Hi "), Id(vocab, "<tool_call>"), .. Encode(vocab, "\n" + wrong + "\n"), Id(vocab, "</tool_call>"), end];
        result = Scripted(vocab, ToolCallFormat.Hermes, script, end, maxNewTokens: 40);
        Assert.StartsWith("Hi <tool_call>\n{\"name\": \"get_", result.Text);
        Assert.DoesNotContain("get_date", result.Text);
    }

    [Fact]
    public void ATriggerThatEndsInsideATokenHandsTheRestToTheGrammar()
    {
        // Llama: the message starts with the token " {\"": the trigger "{" (after a space) ends inside it, and "\"" is the
        // grammar's.
        Vocab vocab = Vocabs.Llama3;
        int eot = Id(vocab, "<|eot_id|>");
        string json = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}";
        int[] ids = Encode(vocab, " " + json);
        Assert.Equal(" {\"", vocab.Tokenizer.Decode([ids[0]]));
        GenerationResult result = Scripted(vocab, ToolCallFormat.Llama3Json, [.. ids, eot], eot);
        Assert.Equal(" " + json, result.Text);

        // Not at the start, "{" is free text.
        string text = "Hi {\"name\": oops}";
        result = Scripted(vocab, ToolCallFormat.Llama3Json, [.. Encode(vocab, text), eot], eot);
        Assert.Equal(text, result.Text);
    }

    [Fact]
    public void EndOfSequenceIsNotAllowedInsideACall()
    {
        Vocab vocab = Vocabs.Llama3;
        int eot = Id(vocab, "<|eot_id|>");
        string start = "{\"name\": \"get_time\", \"parameters\": {\"timezone\": \"UTC";
        int[] script = [.. Encode(vocab, start), eot, .. Enumerable.Repeat(eot, 50)];
        GenerationResult result = Scripted(vocab, ToolCallFormat.Llama3Json, script, eot, maxNewTokens: 30);
        // The model wants to end; the grammar goes on (greedy over equal logits: the first allowed token each time).
        Assert.StartsWith(start, result.Text);
        Assert.True(result.Text.Length > start.Length, result.Text);
    }
}

/// <summary>
/// Random logits over a real vocabulary (see <see cref="RandomModel"/>) that first writes a forced prefix, then now and
/// then a trigger token (boosted), a newline right after it, and the end token; for Llama, a message may start with "{".
/// </summary>
internal sealed class ToolCallingModel : ILlamaModel
{
    private static readonly Dictionary<Tokenizer, (bool[] Structural, bool[] Newline, bool[] Brace)> Tables = [];

    public ToolCallingModel(Vocab vocab, int seed, int[] prefix, int end, int trigger)
    {
        Vocab = vocab;
        Seed = seed;
        Prefix = prefix;
        End = end;
        Trigger = trigger;
        Shape = new LlamaModelShape(
            HiddenSize: 8, IntermediateSize: 16, LayerCount: 1, HeadCount: 1, KvHeadCount: 1, HeadDim: 8,
            VocabSize: vocab.VocabSize, MaxContext: 8192, RmsNormEps: 1e-5f, RopeTheta: 10000f,
            TiedEmbeddings: true, BosTokenId: vocab.EosId, EosTokenIds: [vocab.EosId]);
        lock (Tables)
        {
            if (!Tables.TryGetValue(vocab.Tokenizer, out var tables))
            {
                var structural = new bool[vocab.VocabSize];
                var newline = new bool[vocab.VocabSize];
                var brace = new bool[vocab.VocabSize];
                for (int id = 0; id < vocab.VocabSize; id++)
                {
                    string text;
                    try
                    {
                        text = vocab.Tokenizer.Decode([id]);
                    }
                    catch (Exception)
                    {
                        continue;
                    }
                    structural[id] = id != vocab.EosId && text.Length == 1 && (char.IsAsciiDigit(text[0]) || "\"{}[],:-.".Contains(text[0], StringComparison.Ordinal));
                    newline[id] = text.StartsWith('\n');
                    brace[id] = text.StartsWith('{') || text.StartsWith(" {", StringComparison.Ordinal);
                }
                tables = (structural, newline, brace);
                Tables[vocab.Tokenizer] = tables;
            }
            (Structural, Newline, Brace) = tables;
        }
    }

    public Vocab Vocab { get; }
    public int Seed { get; }
    public int[] Prefix { get; }
    public int End { get; }
    public int Trigger { get; }
    public bool[] Structural { get; }
    public bool[] Newline { get; }
    public bool[] Brace { get; }

    public LlamaModelShape Shape { get; }

    public ILlamaSession CreateSession() => new Session(this);

    public void Dispose() { }

    private sealed class Session(ToolCallingModel model) : ILlamaSession
    {
        private readonly float[] _logits = new float[model.Shape.VocabSize];
        private Random _random = new(model.Seed);
        private int _step;

        public ILlamaModel Model => model;

        public int Position { get; private set; }

        public SessionOptions Options { get; } = new();

        public ReadOnlySpan<float> Logits => _logits;

        public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens)
        {
            if (_step == 0)
                _random = new Random(model.Seed * 7919 + tokens.Length); // each prompt its own noise
            Position += tokens.Length;
            int last = tokens[^1];
            float bias = MathF.Log(_logits.Length) - 1f;
            for (int i = 0; i < _logits.Length; i++)
                _logits[i] = (float)(_random.NextDouble() * 2 - 1) * 1.7f + (model.Structural[i] ? bias : 0f);
            int free = _step - model.Prefix.Length;
            if (free < 0)
            {
                _logits[model.Prefix[_step]] += 50f;
            }
            else
            {
                if (model.Trigger >= 0)
                    _logits[model.Trigger] += bias + 1f;
                if (model.Trigger >= 0 && last == model.Trigger)
                {
                    for (int i = 0; i < _logits.Length; i++)
                        _logits[i] += model.Newline[i] ? bias + 6f : 0f;
                }
                if (free == 0 && model.Prefix.Length == 0 && model.Trigger < 0)
                {
                    // Llama, without a prefix: the message starts with "{" (or " {").
                    for (int i = 0; i < _logits.Length; i++)
                        _logits[i] += model.Brace[i] ? bias + 6f : 0f;
                }
                _logits[model.End] += bias + 1f;
            }
            _step++;
            return _logits;
        }

        public ReadOnlySpan<float> Forward(int token) => Forward(new[] { token });

        public void Save(System.IO.Stream stream) => throw new NotSupportedException();

        public void Restore(System.IO.Stream stream) => throw new NotSupportedException();

        public void Reset()
        {
            Position = 0;
            _step = 0;
        }

        public void Dispose() { }
    }
}
