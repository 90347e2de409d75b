using System;
using System.ClientModel;
using System.Collections.Generic;
using System.Linq;
using System.Net.Http;
using System.Text;
using System.Text.Json;
using System.Threading.Tasks;
using Microsoft.Extensions.AI;
using OpenAI.Chat;
using OpenAI.Embeddings;
using Xunit;
using ChatMessage = OpenAI.Chat.ChatMessage;

namespace Llama.Compiled.Server.Tests;

/// <summary>The official clients (OpenAI's, and Microsoft.Extensions.AI's IChatClient over it) against the server.</summary>
[Collection(SharedServerCollection.Name)]
public sealed class OpenAIClientTests(SharedServer shared)
{
    private TestServer Server => shared.Server;

    [Fact]
    public async Task Chat_greedy_answer_equals_the_in_process_chat_client()
    {
        ChatClient client = Server.ChatClient();
        ChatCompletion completion = await client.CompleteChatAsync(
            [new UserChatMessage("Tell me a story about a dog.")],
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 40 });

        ChatResponse expected = await Reference.GreedyAsync("Tell me a story about a dog.", 40);
        Assert.Equal(expected.Text, completion.Content[0].Text);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal("stories260K", completion.Model);
        Assert.StartsWith("chatcmpl-", completion.Id);
        Assert.Equal(expected.Usage!.InputTokenCount, completion.Usage.InputTokenCount);
        Assert.Equal(40, completion.Usage.OutputTokenCount);
        Assert.Equal(completion.Usage.InputTokenCount + 40, completion.Usage.TotalTokenCount);
    }

    [Fact]
    public async Task Streaming_chunks_add_up_to_the_answer_with_finish_reason_and_usage()
    {
        ChatClient client = Server.ChatClient();
        var text = new StringBuilder();
        OpenAI.Chat.ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (StreamingChatCompletionUpdate update in client.CompleteChatStreamingAsync(
            [new SystemChatMessage("You tell stories."), new UserChatMessage("Once upon a time")],
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 30 }))
        {
            updates++;
            foreach (ChatMessageContentPart part in update.ContentUpdate)
                text.Append(part.Text);
            finish ??= update.FinishReason;
            usage ??= update.Usage;
        }
        var reference = await Reference.GreedyAsyncMessages(
            [new Microsoft.Extensions.AI.ChatMessage(ChatRole.System, "You tell stories."), new Microsoft.Extensions.AI.ChatMessage(ChatRole.User, "Once upon a time")], 30);
        Assert.Equal(reference.Text, text.ToString());
        Assert.True(updates > 3);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Length, finish);
        Assert.NotNull(usage); // the OpenAI client asks for stream_options.include_usage
        Assert.Equal(30, usage!.OutputTokenCount);
        Assert.Equal(reference.Usage!.InputTokenCount, usage.InputTokenCount);
    }

    [Fact]
    public async Task Stop_sequence_ends_the_answer_before_it_with_finish_reason_stop()
    {
        ChatClient client = Server.ChatClient();
        ChatResponse full = await Reference.GreedyAsync("Tell me a story about a cat.", 60);
        // A stop sequence from the middle of the greedy answer: the answer ends right before it.
        string stop = full.Text.Substring(full.Text.Length / 2, 4);
        ChatCompletion completion = await client.CompleteChatAsync(
            [new UserChatMessage("Tell me a story about a cat.")],
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 60, StopSequences = { stop } });

        string expected = full.Text[..full.Text.IndexOf(stop, StringComparison.Ordinal)];
        Assert.Equal(expected.TrimEnd(), completion.Content[0].Text.TrimEnd());
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Stop, completion.FinishReason);
        Assert.Equal((await Reference.GreedyAsync("Tell me a story about a cat.", 60, [stop])).Text, completion.Content[0].Text);
    }

    [Fact]
    public async Task IChatClient_over_the_OpenAI_client_gets_the_same_answers_streamed_or_not()
    {
        IChatClient chat = Server.ChatClient().AsIChatClient();
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 25 };
        ChatResponse response = await chat.GetResponseAsync("Where does the sun go at night?", options);
        ChatResponse expected = await Reference.GreedyAsync("Where does the sun go at night?", 25);
        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(expected.Usage!.InputTokenCount, response.Usage!.InputTokenCount);
        Assert.Equal(25, response.Usage.OutputTokenCount);

        ChatResponse streamed = await chat.GetStreamingResponseAsync("Where does the sun go at night?", options).ToChatResponseAsync();
        Assert.Equal(expected.Text, streamed.Text);
        Assert.Equal(25, streamed.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task Seeded_sampling_is_reproducible()
    {
        ChatClient client = Server.ChatClient();
        var options = new ChatCompletionOptions { Temperature = 0.9f, TopP = 0.9f, MaxOutputTokenCount = 30, Seed = 42 };
        string first = (await client.CompleteChatAsync([new UserChatMessage("Tell me a story.")], options)).Value.Content[0].Text;
        string second = (await client.CompleteChatAsync([new UserChatMessage("Tell me a story.")], options)).Value.Content[0].Text;
        Assert.Equal(first, second);
    }

    [Fact]
    public async Task Embeddings_come_as_floats_and_base64_with_the_same_values()
    {
        var client = new EmbeddingClient("stories260K", new ApiKeyCredential("unused"), Server.ClientOptions());
        OpenAIEmbeddingCollection embeddings = await client.GenerateEmbeddingsAsync(["A cat sat on the mat.", "The dog ran."]);
        Assert.Equal(2, embeddings.Count);
        float[] first = embeddings[0].ToFloats().ToArray();
        Assert.Equal(Server.Backend.Model.Shape.HiddenSize, first.Length);
        Assert.Equal(1f, MathF.Sqrt(first.Sum(x => x * x)), 3);
        Assert.Equal(await Reference.EmbeddingAsync("A cat sat on the mat."), first); // the in-process LlamaEmbeddingGenerator's
        Assert.NotEqual(first, embeddings[1].ToFloats().ToArray());

        // The same input as floats, through the raw endpoint.
        using HttpResponseMessage response = await Server.Http.PostAsync("v1/embeddings", Json("""{"input":"A cat sat on the mat.","encoding_format":"float"}"""));
        Assert.Equal(200, (int)response.StatusCode);
        using JsonDocument body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("list", body.RootElement.GetProperty("object").GetString());
        JsonElement data = body.RootElement.GetProperty("data")[0];
        Assert.Equal("embedding", data.GetProperty("object").GetString());
        float[] floats = data.GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        Assert.Equal(first, floats);
        Assert.True(body.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() > 1);
    }

    [Fact]
    public async Task Models_lists_the_one_model()
    {
        var client = new OpenAI.Models.OpenAIModelClient(new ApiKeyCredential("unused"), Server.ClientOptions());
        OpenAI.Models.OpenAIModelCollection models = await client.GetModelsAsync();
        OpenAI.Models.OpenAIModel model = Assert.Single(models);
        Assert.Equal("stories260K", model.Id);
        Assert.Equal("llama-compiled", model.OwnedBy);
    }

    [Fact]
    public async Task Completions_greedy_text_equals_the_in_process_generator_streamed_or_not()
    {
        GenerationResult expected = Reference.GreedyText("Once upon a time", 24);
        using HttpResponseMessage response = await Server.Http.PostAsync("v1/completions",
            Json("""{"model":"stories260K","prompt":"Once upon a time","max_tokens":24,"temperature":0}"""));
        Assert.Equal(200, (int)response.StatusCode);
        using JsonDocument body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("text_completion", body.RootElement.GetProperty("object").GetString());
        JsonElement choice = body.RootElement.GetProperty("choices")[0];
        Assert.Equal(expected.Text, choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(expected.PromptTokens, body.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        List<JsonDocument> events = await Sse.ReadAllAsync(Server.Http, "v1/completions",
            """{"prompt":"Once upon a time","max_tokens":24,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}""");
        string streamed = string.Concat(events.SelectMany(e => e.RootElement.GetProperty("choices").EnumerateArray()).Select(c => c.GetProperty("text").GetString()));
        Assert.Equal(expected.Text, streamed);
        Assert.Equal(24, events[^1].RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", events[^2].RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Raw_stream_follows_OpenAI_chunk_order()
    {
        List<JsonDocument> events = await Sse.ReadAllAsync(Server.Http, "v1/chat/completions",
            """{"messages":[{"role":"user","content":[{"type":"text","text":"Hi"},{"type":"text","text":"there"}]}],"max_tokens":5,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}""");
        // role first, content deltas, finish_reason, then usage with no choices.
        JsonElement first = events[0].RootElement;
        Assert.Equal("chat.completion.chunk", first.GetProperty("object").GetString());
        Assert.Equal("assistant", first.GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        JsonElement finish = events[^2].RootElement.GetProperty("choices")[0];
        Assert.Equal("length", finish.GetProperty("finish_reason").GetString());
        JsonElement usage = events[^1].RootElement;
        Assert.Equal(0, usage.GetProperty("choices").GetArrayLength());
        Assert.Equal(5, usage.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.All(events, e => Assert.Equal(first.GetProperty("id").GetString(), e.RootElement.GetProperty("id").GetString()));
        for (int i = 1; i < events.Count - 2; i++)
            Assert.Equal(JsonValueKind.Null, events[i].RootElement.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind);
    }

    [Fact]
    public async Task Metrics_are_served_for_Prometheus()
    {
        using (await Server.Http.PostAsync("v1/chat/completions", Json("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":3}""")))
        {
        }
        string metrics = await Server.Http.GetStringAsync("metrics");
        Assert.Contains("llama_compiled_queue_length{", metrics);
        Assert.Contains("llama_compiled_sequences_active{", metrics);
        Assert.Contains("llama_compiled_tokens_total{", metrics);
        Assert.Contains("gen_ai_server_time_to_first_token_seconds_bucket{", metrics);
        Assert.Contains("llama_compiled_server_requests_total{otel_scope_name=\"Llama.Compiled.Server\",endpoint=\"chat\",http_response_status_code=\"200\"}", metrics);
    }

    internal static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");
}
